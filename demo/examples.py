"""Write the Edit tab's example scenes: `python -m demo.examples [--out DIR]`.

Each is a shapes-world scene rendered at the model's 64 px, enlarged 4x with square pixels to
`scene-<seed>.png`, with its caption in `scene-<seed>.txt` (the app uses it as the prompt).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from dalle_core import world
from dalle_core.images import enlarge

from .app import EXAMPLE_SCENES
from .media import DISPLAY_SIZE

SEEDS = (9, 10, 25, 38)  # scenes with something in the lower-right part to redraw


def write_examples(out: Path = EXAMPLE_SCENES, seeds: tuple[int, ...] = SEEDS) -> list[Path]:
    """Render the scenes of `seeds` into `out`; returns the PNG paths."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for seed in seeds:
        scene = world.sample(seed)
        png = out / f"scene-{seed}.png"
        enlarge(scene.image, DISPLAY_SIZE).save(png)
        png.with_suffix(".txt").write_text(scene.caption + "\n")
        paths.append(png)
    return paths


def main(argv: list[str] | None = None) -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=EXAMPLE_SCENES, help="folder to write to (default: %(default)s)"
    )
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=SEEDS, help="world seeds (default: %(default)s)"
    )
    args = parser.parse_args(argv)
    for path in write_examples(args.out, tuple(args.seeds)):
        print(path, "-", path.with_suffix(".txt").read_text().strip())


if __name__ == "__main__":
    main()
