"""`dalle eval`: a GenEval-style report on the shapes world (categories of shared/spec/shapes-world.md,
and those that shared/spec/shapes-world-v2.md adds, in `report2`).

Every category is a set of prompts drawn with a fixed seed; each prompt is sampled as
best-of-1 (one candidate, no reranking) and best-of-N (N candidates reranked by the scorer),
and the top image is judged by the world's evaluator.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .bars import ships, standing
from .checkpoint import file_digests, write_json
from .dalle import Dalle
from .figures import bar_chart, grid, line_chart
from .judge import judge_image
from .report2 import CATEGORIES2, CHANCE, case, kept, not_applicable, trial
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
    return _say(*(Group(s, color=c) for c, s in zip(colors, _two_shapes(rng), strict=True)))


def _binding(k: int) -> Callable[[random.Random], str]:
    def make(rng: random.Random) -> str:
        colors, shapes = rng.sample(list(COLORS), k), [rng.choice(SHAPES) for _ in range(k)]
        return _say(*(Group(s, color=c) for c, s in zip(colors, shapes, strict=True)))

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
ALL_CATEGORIES = (*CATEGORIES, "completion", *CATEGORIES2)


def prompts(category: str, n: int, seed: int = 0) -> list[str]:
    """n prompts of a category, the same for the same seed."""
    rng = random.Random(f"{category}/{seed}")
    out = [CATEGORIES[category](rng) for _ in range(n)]
    for p in out:
        parse_caption(p)  # every prompt is in the grammar
    return out


def evaluate(
    model: Dalle,
    per_category: int = 40,
    candidates: int = 16,
    seed: int = 0,
    categories: list[str] | None = None,
    samples_dir: Path | None = None,
    partial: Path | None = None,
) -> dict:
    """Accuracy per category for best-of-1 and best-of-`candidates`, and the GenEval overall mean.

    `partial` is a file that holds the report so far after each category; when it holds an interrupted
    evaluation of the same weights and settings, its categories are kept rather than measured again.

    A second-edition category also reports its chance level where the spec gives one, the words of its
    prompts the model never saw in training, or why it does not apply to the model (its numbers then None);
    phrasing also reports the pass rates of the same trials said in canonical captions (`canonical_best_of_N`).
    """
    categories = categories or list(ALL_CATEGORIES)
    report: dict = {
        "per_category": per_category,
        "candidates": candidates,
        "seed": seed,
        "results": {},
    }
    key = {**report, "results": None, "weights": file_digests(model.checkpoint)}
    earlier = _earlier(partial, key)
    t0 = time.time() - earlier.get("seconds", 0.0)
    for cat in tqdm(categories, desc="eval", dynamic_ncols=True):
        if cat in earlier.get("results", {}):
            report["results"][cat] = earlier["results"][cat]
            continue
        row, notes = {}, {}
        if cat in CATEGORIES2:
            reason = not_applicable(cat, model.image_size, model.grid)
            if reason:
                report["results"][cat] = {
                    "best_of_1": None,
                    f"best_of_{candidates}": None,
                    "not_applicable": reason,
                }
                continue
            said = [
                case(cat, i, seed, model.image_size, model.grid).prompt for i in range(per_category)
            ]
            notes["unknown_words"] = sorted({w for p in said for w in model.unknown_words(p)})
            if cat in CHANCE:
                notes["chance"] = CHANCE[cat]
        run = trial if cat in CATEGORIES2 else _trial
        for label, cands in (("best_of_1", 1), (f"best_of_{candidates}", candidates)):
            passed, examples = [], []
            for i in range(per_category):
                ok, image, caption = run(model, cat, i, cands, seed)
                passed.append(ok)
                examples.append((image, f"{'PASS' if ok else 'FAIL'}: {caption}"))
            row[label] = float(np.mean(passed))
            if (
                cat == "phrasing"
            ):  # the same trials said canonically, the measure phrasing is held to
                notes[f"canonical_{label}"] = float(
                    np.mean(
                        [
                            trial(model, cat, i, cands, seed, canonical=True)[0]
                            for i in range(per_category)
                        ]
                    )
                )
            if samples_dir is not None:
                samples_dir.mkdir(parents=True, exist_ok=True)
                grid(
                    [e[0] for e in examples[:16]], [e[1] for e in examples[:16]], cols=8, scale=2
                ).save(samples_dir / f"{cat}-{label}.png")
        report["results"][cat] = {**row, **notes}
        if partial is not None:
            write_json(
                partial,
                {
                    "key": key,
                    "results": {**earlier.get("results", {}), **report["results"]},
                    "seconds": time.time() - t0,
                },
            )
    for label in ("best_of_1", f"best_of_{candidates}"):
        six = [report["results"][c][label] for c in GENEVAL_SIX if c in report["results"]]
        report.setdefault("overall", {})[label] = float(np.mean(six)) if len(six) == 6 else None
    report["seconds"] = round(time.time() - t0, 1)
    return report


def _earlier(partial: Path | None, key: dict) -> dict:
    """The categories and seconds that `partial` kept of an interrupted evaluation under `key`, else {}."""
    if partial is None or not partial.exists():
        return {}
    try:
        saved = json.loads(partial.read_text())
    except ValueError:
        saved = {}
    if not isinstance(saved, dict) or saved.get("key") != key:
        print(f"{partial}: not of this model and settings; measuring every category again")
        return {}
    print(
        f"{partial}: continuing an interrupted evaluation; keeping {', '.join(saved['results'])} "
        f"(delete the file to measure them again)"
    )
    return saved


def _trial(
    model: Dalle, category: str, i: int, candidates: int, seed: int
) -> tuple[bool, np.ndarray, str]:
    settings = dict(n=1, candidates=candidates, seed=seed * 100_003 + i)
    if category != "completion":
        caption = prompts(category, i + 1, seed)[i]
        image = model.generate(caption, **settings)[0].image
        return judge_image(image, caption)[0], image, caption
    caption = prompts("color_attr", i + 1, seed + 1)[i]
    original = render(scene_for(caption, seed=i), model.image_size)
    region = (model.grid // 2, model.grid // 2)  # the bottom-right quarter of the token grid
    image = model.complete(original, caption, region=region, **settings)[0].image
    ok = kept(original, image, *model.rectangle_pixels(region))
    return judge_image(image, caption)[0] and ok, image, caption


def write_report(report: dict, out: Path) -> None:
    """eval.json, eval.md (a table, then notes on second-edition categories), eval.png (accuracy against the
    number of objects) and categories.png (accuracy per category)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "eval.json").write_text(json.dumps(report, indent=2))
    labels = list(dict.fromkeys(["best_of_1", f"best_of_{report['candidates']}"]))
    rows = report["results"]
    columns = labels + (["chance"] if any("chance" in row for row in rows.values()) else [])
    lines = ["| category | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
    for cat, row in rows.items():
        lines.append(
            f"| {cat} | "
            + " | ".join("-" if row.get(k) is None else f"{row[k]:.2f}" for k in columns)
            + " |"
        )
    overall = report["overall"]
    lines.append(
        "| **overall (GenEval six)** | "
        + " | ".join(f"**{overall[k]:.2f}**" if overall.get(k) is not None else "-" for k in labels)
        + " | -" * (len(columns) - len(labels))
        + " |"
    )
    notes = [
        f"- {cat}: not applicable: {row['not_applicable']}"
        for cat, row in rows.items()
        if "not_applicable" in row
    ]
    notes += [
        f"- {cat}: its prompts hold words the model never saw in training ({', '.join(row['unknown_words'])})"
        for cat, row in rows.items()
        if row.get("unknown_words")
    ]
    if notes:
        lines += [
            "",
            "Second-edition categories (shapes-world-v2.md); a model that never saw their words or layouts "
            "scores about chance on them:",
            "",
            *notes,
        ]
    if "bars" in report:
        bars = report["bars"]
        lines += [
            "",
            f"## Against the shipped model ({bars['against']}) and the second edition's bars",
            "",
            "| what | this model | target | from | met |",
            "|---|---|---|---|---|",
            *(
                f"| {b['what']} | {_figure(b['value'])} | {_figure(b['target'])} | {b['source']} | "
                f"{'yes' if b['met'] else '**no**'} |"
                for b in bars["rows"]
            ),
            "",
            f"**Ships: {'yes' if bars['ships'] else 'no'}** ({bars['why']}).",
        ]
    (out / "eval.md").write_text(
        f"{report['per_category']} prompts per category, seed {report['seed']}, "
        f"{report['seconds']} s.\n\n" + "\n".join(lines) + "\n"
    )
    _plot(report, labels, out / "eval.png")
    bar_chart(
        {
            cat: {label.replace("_", " "): row[label] for label in labels}
            for cat, row in rows.items()
        },
        "accuracy",
    ).save(out / "categories.png")


def compare(report: dict, shipped: dict, against: str) -> None:
    """Add to a report its standing against the shipped model's report (read from `against`) and the second
    edition's bars (`bars.standing`), and whether it ships; `write_report` then shows them."""
    rows = standing(report, shipped)
    ok, why = ships(report, rows)
    report["bars"] = {
        "against": against,
        "ships": ok,
        "why": why,
        "rows": [{**asdict(b), "met": b.met} for b in rows],
    }


def _figure(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _plot(report: dict, labels: list[str], path: Path) -> None:
    """Accuracy of binding_1..4 against the number of objects, one line per label."""
    ks = [k for k in range(1, 5) if f"binding_{k}" in report["results"]]
    if ks:
        series = {
            label.replace("_", " "): [(k, report["results"][f"binding_{k}"][label]) for k in ks]
            for label in labels
        }
        line_chart(series, "objects in the prompt (binding_k)", "accuracy").save(path)
