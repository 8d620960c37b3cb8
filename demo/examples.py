"""The app's examples, chosen for the model it runs: the prompts it can read, scenes at its image size, and the
puzzles whose panels fall on its token grid.

`python -m demo.examples [--out DIR]` writes the example scenes at 64 px, enlarged 4x with square pixels, to
`assets/examples/scene-<seed>.png` with their captions beside them: images to upload (the README's API calls
and the tests use them).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import numpy as np

from dalle_core import world
from dalle_core.dalle import PARTIAL_GRAY
from dalle_core.images import enlarge
from dalle_core.layouts import LayoutCaption, all_transforms, caption_of_layout
from dalle_core.report2 import case, not_applicable

from .media import DISPLAY_SIZE

EXAMPLE_SCENES = Path(__file__).resolve().parent.parent / "assets" / "examples"

SEEDS = (9, 10, 25, 38)  # scenes with something in the lower-right part to redraw
PROMPTS = [
    "a red circle",
    "two blue squares",
    "a yellow triangle above a green diamond",
    "a small pink cross to the left of a large cyan circle",
    "a purple circle on a black background",
    "three orange triangles on a gray background",
    # the second edition: orientation, pairs, paraphrases
    "a red triangle pointing left",
    "a green triangle pointing down above a blue square",
    "two yellow circles on the top and the same upside down on the bottom",
    "a purple diamond on the top and the same as crosses on the bottom",
    "draw a tiny cyan cross next to a big orange square",
]
# the Edit tab's puzzles: (label, the evaluation category whose first trial it is)
PUZZLES = (
    ("translation: mirrored", "translation_mirrored"),
    ("translation: another color", "translation_color"),
    ("analogy: D missing", "analogy"),
    ("matrix: panel 9 missing", "matrix"),
)


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


def scenes(image_size: int) -> list[tuple[np.ndarray, str]]:
    """(image, caption) of the example scenes at a model's image size."""
    return [(s.image, s.caption) for s in (world.sample(seed, image_size) for seed in SEEDS)]


def prompts_for(known: Callable[[str], bool]) -> list[str]:
    """The example prompts whose every word a model knows (`known`)."""
    return [p for p in PROMPTS if known(p)]


def translations() -> list[str]:
    """A pair's prompt for each transform: "the same mirrored on the bottom", ..."""
    return [caption_of_layout(LayoutCaption("pair", t)) for t in all_transforms()]


def puzzles(image_size: int, grid: int) -> list[tuple[str, np.ndarray, str, tuple[int, int]]]:
    """(label, image, prompt, region) of each puzzle whose panels fall on a model's token grid: the first trial of
    its evaluation category (`report2.case`), the part to complete grayed out."""
    found = []
    for label, category in PUZZLES:
        if not_applicable(category, image_size, grid):
            continue
        c = case(category, 0, 0, image_size, grid)
        image, f = c.given.copy(), image_size // grid
        image[c.region[0] * f :, c.region[1] * f :] = PARTIAL_GRAY
        found.append((label, image, c.prompt, c.region))
    return found


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
