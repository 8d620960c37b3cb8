"""Canvases per second of the shapes world (sampling + anti-aliased rendering) on one core, v1 scenes beside the
second edition's layouts and stream, and the evaluator's parses."""

import time

import torch
from common import median_seconds, record

from dalle_core.judge import parse, parse_layout
from dalle_core.layouts import LAYOUTS, sample_layout
from dalle_core.world import sample
from dalle_core.world2 import sample2

N = 2000


def _rate(make, n: int = N) -> float:
    """Calls of make(i) per second, i = 0..n-1 (median of 3 runs)."""
    return n / median_seconds(
        lambda: [make(i) for i in range(n)], repeat=3, clock=time.process_time
    )


def _row(what: str, size: int, per_s: float, target: float | str = "-") -> dict:
    return {"what": what, "size": size, "per_s": per_s, "target_per_s": target}


def main() -> None:
    torch.set_num_threads(1)
    rows = [
        _row(
            "v1 scene: sample + render",
            size,
            _rate(lambda i, size=size: sample(i, size)),
            2000 if size == 64 else "-",
        )
        for size in (64, 96, 128)
    ]
    v1_96 = round(rows[1]["per_s"])  # the second edition's target: v1's rate at the same side
    rows += [
        _row(
            f"{kind}: sample + render",
            96,
            _rate(lambda i, kind=kind: sample_layout(kind, i, 96)),
            v1_96,
        )
        for kind in LAYOUTS
    ]
    rows.append(
        _row("v2 stream (sample2): sample + render", 96, _rate(lambda i: sample2(i, 96)), v1_96)
    )
    images = [sample(i).image for i in range(200)]
    rows.append(
        _row(
            "evaluator: parse a v1 scene",
            64,
            200
            / median_seconds(
                lambda: [parse(im) for im in images], repeat=3, clock=time.process_time
            ),
        )
    )
    for kind in LAYOUTS:
        canvases = [sample_layout(kind, i, 96).image for i in range(50)]
        seconds = median_seconds(
            lambda cs=canvases, k=kind: [parse_layout(im, k) for im in cs],
            repeat=3,
            clock=time.process_time,
        )
        rows.append(_row(f"evaluator: parse a {kind}", 96, 50 / seconds))
    record(
        "world",
        rows,
        f"Canvases per second of one core's CPU time (process time, which other work on a shared "
        f"machine disturbs less than wall time; median of 3 runs of {N:,} canvases; parses of 200 v1 "
        "scenes and 50 layouts). The second edition's target is v1's rate at the same side.",
    )


if __name__ == "__main__":
    main()
