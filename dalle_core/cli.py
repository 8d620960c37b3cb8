"""`dalle`: the command line (world grids, training, evaluation, generation)."""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path


def cmd_world(a: argparse.Namespace) -> None:
    from .imaging import grid
    from .world import sample

    samples = [sample(a.seed + i, a.size) for i in range(a.n)]
    grid([s.image for s in samples], [s.caption for s in samples], cols=a.cols, scale=a.scale).save(a.out)
    print(f"wrote {a.n} scenes to {a.out}")


def cmd_eval(a: argparse.Namespace) -> None:
    from .facade import Dalle
    from .geneval import CATEGORIES, evaluate, write_report

    cats = a.categories.split(",") if a.categories else None
    unknown = set(cats or []) - set(CATEGORIES) - {"completion"}
    if unknown:
        raise SystemExit(f"unknown categories {sorted(unknown)}; known: {', '.join([*CATEGORIES, 'completion'])}")
    _use_threads(a.threads)
    report = evaluate(Dalle(a.checkpoint, a.device), a.per_category, a.candidates, a.seed, cats,
                      samples_dir=a.out / "samples")
    write_report(report, a.out)
    print((a.out / "eval.md").read_text())


def cmd_generate(a: argparse.Namespace) -> None:
    from .facade import Dalle, Settings
    from .imaging import grid

    settings = dict(n=a.n, candidates=max(a.candidates, a.n), temperature=a.temperature, top_k=a.top_k,
                    top_p=a.top_p, guidance=a.guidance, seed=a.seed)
    try:
        Settings(**settings)  # bad settings are reported before the model loads
        _use_threads(a.threads)
        model = Dalle(a.checkpoint, a.device)
        results = model.generate(a.prompt, **settings)
    except ValueError as e:
        raise SystemExit(f"error: {e}") from e
    for word in model.unknown_words(a.prompt):
        print(f"note: the model never saw the word {word!r} in training")
    grid([r.image for r in results], [f"{r.score:.3f}" for r in results], cols=min(a.n, 8), scale=4).save(a.out)
    print(f"wrote {len(results)} images (best first) to {a.out}")


def cmd_curves(a: argparse.Namespace) -> None:
    import json

    from .imaging import line_chart

    log = a.run / "log.jsonl"
    if not log.exists():
        raise SystemExit(f"no training log at {log}")
    rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    rows = [{**r, **r.get("val", {})} for r in rows]  # training and validation metrics side by side
    series = {}
    for key in a.keys.split(","):
        points = [(r["samples"], r[key]) for r in rows if key in r]
        if not points:
            raise SystemExit(f"{log} has no {key!r}")
        series[key] = points
    line_chart(series, "training samples seen", a.keys.replace(",", ", ")).save(a.out)
    print(f"wrote {a.out}")


def int_at_least(low: int, name: str) -> Callable[[str], int]:
    """An argparse type named `name`: an integer of `low` or more."""
    def parse(text: str) -> int:
        value = int(text)
        if value < low:
            raise argparse.ArgumentTypeError(f"must be {low} or more, got {text}")
        return value

    parse.__name__ = name  # argparse names the type in "invalid <name> value"
    return parse


non_negative_int = int_at_least(0, "non_negative_int")
positive_int = int_at_least(1, "positive_int")


def positive_float(text: str) -> float:
    """An argparse type: a number above 0."""
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def _use_threads(n: int) -> None:
    """Run torch on n CPU threads (0: leave torch's choice)."""
    if n:
        import torch

        torch.set_num_threads(n)


def _model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", type=Path, help="checkpoint directory (default: the shipped assets/checkpoint)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--threads", type=non_negative_int, default=0,
                   help="CPU threads (default: torch's choice; 1 is faster while other work holds a core)")


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `dalle` command."""
    from .world import MIN_SIZE

    p = argparse.ArgumentParser(prog="dalle", description="A laptop-sized DALL·E on the shapes world.")
    sub = p.add_subparsers(dest="command", required=True)

    w = sub.add_parser("world", help="write a grid of random world scenes with their captions")
    w.add_argument("--n", type=positive_int, default=16, help="number of scenes (default 16)")
    w.add_argument("--seed", type=int, default=0, help="first scene seed (default 0)")
    w.add_argument("--size", type=int_at_least(MIN_SIZE, "world_size"), default=64, help="image side in pixels (default 64)")
    w.add_argument("--cols", type=positive_int, default=4, help="grid columns (default 4)")
    w.add_argument("--scale", type=positive_int, default=3, help="nearest-neighbour enlargement (default 3)")
    w.add_argument("--out", type=Path, default=Path("world.png"), help="output PNG (default world.png)")
    w.set_defaults(func=cmd_world)

    g = sub.add_parser("generate", help="generate images for a prompt, best first, into a PNG grid")
    g.add_argument("prompt")
    g.add_argument("--n", type=int, default=4, help="images to keep (default 4)")
    g.add_argument("--candidates", type=int, default=16, help="images sampled and reranked (default 16)")
    g.add_argument("--temperature", type=float, default=1.0)
    g.add_argument("--top-k", dest="top_k", type=int, default=64, help="0 turns it off (default 64)")
    g.add_argument("--top-p", dest="top_p", type=float, default=1.0)
    g.add_argument("--guidance", type=float, default=3.0, help="classifier-free guidance scale >= 1 (default 3)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--out", type=Path, default=Path("generated.png"))
    _model_options(g)
    g.set_defaults(func=cmd_generate)

    e = sub.add_parser("eval", help="GenEval-style evaluation on the shapes world (JSON, markdown, PNG plot)")
    e.add_argument("--per-category", dest="per_category", type=positive_int, default=40, help="prompts per category (default 40)")
    e.add_argument("--candidates", type=positive_int, default=16, help="N of the reranked best-of-N (default 16)")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--categories", help="comma-separated subset (default: all)")
    e.add_argument("--out", type=Path, default=Path("eval"), help="output folder (default eval/)")
    _model_options(e)
    e.set_defaults(func=cmd_eval)

    c = sub.add_parser("curves", help="plot metrics of a training run's log.jsonl against samples seen")
    c.add_argument("run", type=Path, help="a run directory (for example checkpoints/shapes/runs/transformer)")
    c.add_argument("--keys", default="loss", help="comma-separated metrics (default loss)")
    c.add_argument("--out", type=Path, default=Path("curves.png"), help="output PNG (default curves.png)")
    c.set_defaults(func=cmd_curves)

    from . import recipe  # the training and evaluation commands live with the recipe
    recipe.add_commands(sub)

    a = p.parse_args(argv)
    from .checkpoint import CheckpointError

    try:
        a.func(a)
    except KeyboardInterrupt:
        sys.exit(130)
    except (CheckpointError, recipe.StageFailed) as e:  # the message names the file and what to do
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
