"""The second edition's bars: when a `dalle eval` report of a new model beats the shipped model's everywhere.

A new model ships only when it is at least as good as the shipped one in every category the shipped one was
measured on (best-of-N and the best-of-1 overall), and meets the second edition's own bars (best-of-N unless
said): binding_4 >= 0.50, binding_3 >= 0.85, best-of-1 overall >= 0.85, every translation_T >= 0.90, analogy
>= 0.80, matrix >= 0.60, orientation >= 0.90, novel >= 0.80, and phrasing >= 0.90 of the same trials said in
canonical captions. Bars are for 40 or more prompts per category; the latency bar is measured by
`benchmarks/latency.py`, not here.
"""

from __future__ import annotations

from dataclasses import dataclass

from .report2 import TRANSLATIONS

BARS = {
    "binding_4": 0.50,
    "binding_3": 0.85,
    **dict.fromkeys(TRANSLATIONS, 0.90),
    "analogy": 0.80,
    "matrix": 0.60,
    "orientation": 0.90,
    "novel": 0.80,
}
OVERALL_BEST_OF_1 = 0.85
PHRASING_SHARE = 0.90  # of the canonical pass rate
MIN_PROMPTS = 40


@dataclass(frozen=True)
class Bar:
    """One measured figure of a report against its target (None where the report or the target lacks it)."""

    what: str
    value: float | None
    target: float | None
    source: str

    @property
    def met(self) -> bool:
        return self.value is not None and self.target is not None and self.value >= self.target


def standing(report: dict, shipped: dict) -> list[Bar]:
    """Every bar of a report (from `report.evaluate`) against the shipped model's report and `BARS`. A category
    the report did not measure, or could not (not applicable), does not meet its bar."""
    if report["candidates"] != shipped["candidates"]:
        raise ValueError(
            f"the reports rerank different numbers of candidates ({report['candidates']} and "
            f"{shipped['candidates']}): compare best-of-N with the same N"
        )
    n = f"best_of_{report['candidates']}"
    mine, theirs = report["results"], shipped["results"]

    def value(category: str, label: str = n) -> float | None:
        return mine.get(category, {}).get(label)

    def better_of(v1: float | None, bar: float | None) -> tuple[float | None, str]:
        if bar is None or (v1 is not None and v1 > bar):
            return v1, "the shipped model"
        return bar, "the second edition's bar"

    bars = []
    for category, row in theirs.items():
        if row.get(n) is None:
            continue
        target, source = better_of(row[n], BARS.get(category))
        bars.append(Bar(f"{category}, {n.replace('_', '-')}", value(category), target, source))
    for label in (n, "best_of_1"):
        target, source = better_of(
            shipped["overall"].get(label), OVERALL_BEST_OF_1 if label == "best_of_1" else None
        )
        overall = report["overall"].get(label)
        bars.append(
            Bar(f"overall (GenEval six), {label.replace('_', '-')}", overall, target, source)
        )
    for category, bar in BARS.items():
        if category not in theirs or theirs[category].get(n) is None:
            bars.append(
                Bar(
                    f"{category}, {n.replace('_', '-')}",
                    value(category),
                    bar,
                    "the second edition's bar",
                )
            )
    canonical = value("phrasing", f"canonical_{n}")
    bars.append(
        Bar(
            f"phrasing, {n.replace('_', '-')}",
            value("phrasing"),
            None if canonical is None else PHRASING_SHARE * canonical,
            f"{PHRASING_SHARE:g} x the same trials said canonically",
        )
    )
    return bars


def ships(report: dict, bars: list[Bar]) -> tuple[bool, str]:
    """Whether a report's model ships, and why (every bar met, on enough prompts per category)."""
    missed = [b.what for b in bars if not b.met]
    if report["per_category"] < MIN_PROMPTS:
        return (
            False,
            f"{report['per_category']} prompts per category; the bars need {MIN_PROMPTS} or more",
        )
    if missed:
        return False, f"{len(missed)} of {len(bars)} bars missed: {'; '.join(missed)}"
    return True, f"all {len(bars)} bars met"
