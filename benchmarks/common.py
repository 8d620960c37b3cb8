"""Shared by the benchmarks: timing with warm-up and medians, and writing results."""

from __future__ import annotations

import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

HERE = Path(__file__).parent


def median_seconds(
    fn: Callable[[], object],
    repeat: int = 5,
    warmup: int = 1,
    clock: Callable[[], float] = time.perf_counter,
) -> float:
    """Median time of fn() over `repeat` runs after `warmup` runs: wall time, or another `clock` (such as
    `time.process_time`, the process's CPU time, which other work on a shared machine disturbs less)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t = clock()
        fn()
        times.append(clock() - t)
    return statistics.median(times)


def cpu_name() -> str:
    """The CPU's model name and its native bf16 units (from /proc/cpuinfo), else the platform's machine type.

    The development machine has changed between sessions (AVX2 and AVX-512 BF16 EPYCs, an AMX Xeon), and bf16
    matmuls ran at about 1, 335 (two threads) and 1000 (one thread) GFLOP/s on them, so every result names its CPU."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    fields: dict[str, str] = {}  # the first processor's fields
    for line in info.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip(), value.strip())
    units = [
        unit for unit in ("amx_bf16", "avx512_bf16") if unit in fields.get("flags", "").split()
    ]
    return (
        f"{fields.get('model name', platform.machine())} ({', '.join(units) or 'no native bf16'})"
    )


def machine() -> dict:
    return {
        "cpu": cpu_name(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }


def table(rows: list[dict]) -> str:
    """A markdown table of dict rows."""
    cols = list(rows[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += [
        "| "
        + " | ".join(f"{r[c]:.4g}" if isinstance(r[c], float) else str(r[c]) for c in cols)
        + " |"
        for r in rows
    ]
    return "\n".join(lines)


def record(name: str, rows: list[dict], notes: str = "") -> None:
    """Print the table, write benchmarks/results/<name>.json and its section of RESULTS.md."""
    text = table(rows)
    print(text)
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / f"{name}.json").write_text(
        json.dumps({"machine": machine(), "rows": rows, "notes": notes}, indent=2)
    )
    results = HERE / "RESULTS.md"
    sections = {}
    if results.exists():
        for part in results.read_text().split("\n## ")[1:]:
            title, _, body = part.partition("\n")
            sections[title.strip()] = body.strip()
    m = machine()
    measured = f"Measured {m['date']} on {m['cpu']}, torch {m['torch']}, {m['threads']} threads."
    sections[name] = f"{notes}\n\n{measured}\n\n{text}"
    body = "\n\n".join(f"## {k}\n\n{v}" for k, v in sorted(sections.items()))
    results.write_text(
        "# Benchmark results\n\nWritten by the scripts in this folder; each section is replaced "
        "when its script runs again.\n\n" + body + "\n"
    )
