"""`dalle eval`: a GenEval-style report on the shapes world (categories of shared/spec/shapes-world.md).

Every category is a set of prompts drawn with a fixed seed; each prompt is sampled as
best-of-1 (one candidate, no reranking) and best-of-N (N candidates reranked by the scorer),
and the top image is judged by the world's evaluator.
"""
from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .dalle import Dalle
from .figures import grid, line_chart
from .judge import judge_image
from .world import (
    BACKGROUNDS,
    COLORS,
    RELATIONS,
    SHAPES,
    WHERE,
    Expectation,
    Group,
    caption_of,
    parse_caption,
    render,
    scene_for,
)

GENEVAL_SIX = ("single_object", "colors", "counting", "two_object", "position", "color_attr")
NUMBERS = {2: "two", 3: "three", 4: "four"}


def _say(*groups: Group, relation: str | None = None, background: str | None = None) -> str:
    """The caption of these groups, in the world's own words."""
    return caption_of(Expectation(groups, relation, background))


def _two_shapes(rng: random.Random) -> list[str]:
    return rng.sample(SHAPES, 2)


def _colors(rng: random.Random) -> str:
    color = rng.choice(list(COLORS))
    return _say(Group(rng.choice(SHAPES), color=color))


def _count(rng: random.Random) -> str:
    n = rng.randint(2, 4)
    return _say(Group(rng.choice(SHAPES), count=n, article=NUMBERS[n]))


def _position(rng: random.Random) -> str:
    a, b = _two_shapes(rng)
    return _say(Group(a), Group(b), relation=rng.choice(list(RELATIONS)))


def _color_attr(rng: random.Random) -> str:
    colors = rng.sample(list(COLORS), 2)
    return _say(*(Group(s, color=c) for c, s in zip(colors, _two_shapes(rng))))


def _binding(k: int) -> Callable[[random.Random], str]:
    def make(rng: random.Random) -> str:
        colors, shapes = rng.sample(list(COLORS), k), [rng.choice(SHAPES) for _ in range(k)]
        return _say(*(Group(s, color=c) for c, s in zip(colors, shapes)))
    return make


def _size(rng: random.Random) -> str:
    size, color = rng.choice(["small", "large"]), rng.choice(list(COLORS))
    return _say(Group(rng.choice(SHAPES), color=color, size=size))


def _background(rng: random.Random) -> str:
    color, shape = rng.choice(list(COLORS)), rng.choice(SHAPES)
    return _say(Group(shape, color=color), background=rng.choice(list(BACKGROUNDS)))


CATEGORIES: dict[str, Callable[[random.Random], str]] = {
    "single_object": lambda r: _say(Group(r.choice(SHAPES))),
    "colors": _colors,
    "counting": _count,
    "two_object": lambda r: _say(*map(Group, _two_shapes(r))),
    "position": _position,
    "color_attr": _color_attr,
    **{f"binding_{k}": _binding(k) for k in range(1, 5)},
    "size": _size,
    "absolute_position": lambda r: _say(Group(r.choice(SHAPES), where=r.choice(list(WHERE)))),
    "background": _background,
}
COMPLETION_REGION = (4, 4)  # the bottom-right quarter of an 8x8 grid


def prompts(category: str, n: int, seed: int = 0) -> list[str]:
    """n prompts of a category, the same for the same seed."""
    rng = random.Random(f"{category}/{seed}")
    out = [CATEGORIES[category](rng) for _ in range(n)]
    for p in out:
        parse_caption(p)  # every prompt is in the grammar
    return out


def evaluate(model: Dalle, per_category: int = 40, candidates: int = 16, seed: int = 0,
             categories: list[str] | None = None, samples_dir: Path | None = None) -> dict:
    """Accuracy per category for best-of-1 and best-of-`candidates`, and the GenEval overall mean."""
    categories = categories or [*CATEGORIES, "completion"]
    report: dict = {"per_category": per_category, "candidates": candidates, "seed": seed, "results": {}}
    t0 = time.time()
    for cat in tqdm(categories, desc="eval", dynamic_ncols=True):
        row = {}
        for label, cands in (("best_of_1", 1), (f"best_of_{candidates}", candidates)):
            passed, examples = [], []
            for i in range(per_category):
                ok, image, caption = _trial(model, cat, i, cands, seed)
                passed.append(ok)
                examples.append((image, f"{'PASS' if ok else 'FAIL'}: {caption}"))
            row[label] = float(np.mean(passed))
            if samples_dir is not None:
                samples_dir.mkdir(parents=True, exist_ok=True)
                grid([e[0] for e in examples[:16]], [e[1] for e in examples[:16]], cols=8, scale=2).save(
                    samples_dir / f"{cat}-{label}.png")
        report["results"][cat] = row
    for label in ("best_of_1", f"best_of_{candidates}"):
        six = [report["results"][c][label] for c in GENEVAL_SIX if c in report["results"]]
        report.setdefault("overall", {})[label] = float(np.mean(six)) if len(six) == 6 else None
    report["seconds"] = round(time.time() - t0, 1)
    return report


def _trial(model: Dalle, category: str, i: int, candidates: int, seed: int) -> tuple[bool, np.ndarray, str]:
    settings = dict(n=1, candidates=candidates, seed=seed * 100_003 + i)
    if category != "completion":
        caption = prompts(category, i + 1, seed)[i]
        image = model.generate(caption, **settings)[0].image
        return judge_image(image, caption)[0], image, caption
    caption = prompts("color_attr", i + 1, seed + 1)[i]
    original = render(scene_for(caption, seed=i))
    image = model.complete(original, caption, region=COMPLETION_REGION, **settings)[0].image
    y, x = model.rectangle_pixels(COMPLETION_REGION)
    outside = np.ones(original.shape[:2], bool)
    outside[y:, x:] = False
    kept = np.array_equal(image[outside], original[outside])
    return judge_image(image, caption)[0] and kept, image, caption


def write_report(report: dict, out: Path) -> None:
    """eval.json, eval.md (a table) and eval.png (accuracy against the number of objects)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "eval.json").write_text(json.dumps(report, indent=2))
    labels = [k for k in next(iter(report["results"].values()))]
    lines = ["| category | " + " | ".join(labels) + " |", "|---|" + "---|" * len(labels)]
    for cat, row in report["results"].items():
        lines.append(f"| {cat} | " + " | ".join(f"{row[k]:.2f}" for k in labels) + " |")
    overall = report["overall"]
    lines.append("| **overall (GenEval six)** | " + " | ".join(
        f"**{overall[k]:.2f}**" if overall.get(k) is not None else "-" for k in labels) + " |")
    (out / "eval.md").write_text(f"{report['per_category']} prompts per category, seed {report['seed']}, "
                                 f"{report['seconds']} s.\n\n" + "\n".join(lines) + "\n")
    _plot(report, labels, out / "eval.png")


def _plot(report: dict, labels: list[str], path: Path) -> None:
    """Accuracy of binding_1..4 against the number of objects, one line per label."""
    ks = [k for k in range(1, 5) if f"binding_{k}" in report["results"]]
    if ks:
        series = {label.replace("_", " "): [(k, report["results"][f"binding_{k}"][label]) for k in ks]
                  for label in labels}
        line_chart(series, "objects in the prompt (binding_k)", "accuracy").save(path)
