"""Shared by the benchmarks: timing with warm-up and medians, and writing results."""

from __future__ import annotations

import json
import os
import shutil
import statistics
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch

from dalle_core.device import device_name

HERE = Path(__file__).parent


def median_seconds(
    fn: Callable[[], object],
    repeat: int = 5,
    warmup: int = 1,
    clock: Callable[[], float] = time.perf_counter,
) -> float:
    """Median time of fn() over `repeat` runs after `warmup` runs: wall time, or another `clock` (such as
    `time.process_time`, the process's CPU time, which other work on a shared machine disturbs less)."""
    return interleaved_medians({"fn": fn}, repeat, warmup, clock)["fn"]


def interleaved_medians(
    fns: dict[str, Callable[[], object]],
    repeat: int = 5,
    warmup: int = 1,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, float]:
    """Median time (by `clock`) of each fn() over `repeat` rounds, each round running every fn once in turn
    (after `warmup` rounds), so that a shared machine's slow spells fall on all of them alike."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            t = clock()
            fn()
            times[name].append(clock() - t)
    return {name: statistics.median(ts) for name, ts in times.items()}


def matmul_gflops(
    dtype: torch.dtype, sizes: tuple[int, ...] = (256, 512, 1024), repeat: int = 20
) -> float:
    """This machine's dense matmul throughput in GFLOP/s: the fastest n x n product over a few sizes, `repeat`
    tries each. A peak: on a shared machine a median measures the neighbours too, and a large product their use of
    the caches (under load, 1024^2 products ran at a third of the speed of 256^2 ones on one thread here)."""
    best = 0.0
    for n in sizes:
        a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
        a @ b
        for _ in range(repeat):
            t = time.perf_counter()
            a @ b
            best = max(best, 2 * n**3 / (time.perf_counter() - t) / 1e9)
    return best


def load_average() -> str:
    """The 1-minute load average and the CPU count, as in `uptime`: how busy the machine was."""
    try:
        return f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    except OSError:
        return "load average unknown"


def goal_row(goal: str, figure: float, target: str, unit: str = "") -> dict:
    """A row of a goals table: the figure beside its target (">= 5", "<= 2.5") and whether it is met."""
    op, bound = target.split()
    met = figure >= float(bound) if op == ">=" else figure <= float(bound)
    return {
        "goal": goal,
        "figure": f"{figure:.3g}{unit}",
        "target": f"{target}{unit}",
        "met": "yes" if met else "no",
    }


def sizes_of(text: str) -> list[tuple[int, int]]:
    """ "4x192,8x256" -> [(4, 192), (8, 256)]: transformer sizes as layers x width."""
    return [tuple(int(v) for v in size.split("x")) for size in text.split(",")]


def transformer_size(layers: int, width: int) -> dict:
    """`v2_checkpoint`'s transformer at a size: heads of 32 channels, every layer causal, as
    `dalle train --transformer-layers --transformer-width` makes it."""
    return {
        "n_layer": layers,
        "n_head": width // 32,
        "n_embd": width,
        "attn_masks": ("causal",) * layers,
    }


def v2_checkpoint(directory: str | Path, transformer: dict | None = None) -> Path:
    """A random-weight checkpoint of the v2 recipe's design (`dalle train --v2`: a 12 x 12 grid at 96 px, 40 text
    tokens) at the shipped widths and depths (or the transformer's `n_layer`, `n_head`, `n_embd` given), with the
    shipped tokenizer's vocabulary. For timing only: it draws noise."""
    from dalle_core import DEFAULT_CHECKPOINT
    from dalle_core.checkpoint import config_from_json, save_model, write_json
    from dalle_core.clip import Clip, ClipConfig
    from dalle_core.recipe import PRESETS
    from dalle_core.transformer import DalleTransformer, TransformerConfig
    from dalle_core.vae import DiscreteVAE, VAEConfig

    v2, sizes = PRESETS["shapes2"], transformer
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copy(DEFAULT_CHECKPOINT / "tokenizer.json", directory / "tokenizer.json")
    text = json.loads((DEFAULT_CHECKPOINT / "text.json").read_text())
    write_json(directory / "text.json", {**text, "length": v2.text_len})
    vae = config_from_json(VAEConfig, DEFAULT_CHECKPOINT / "vae.json")
    torch.manual_seed(0)
    save_model(directory, "vae", DiscreteVAE(replace(vae, image_size=v2.image_size)))
    transformer = config_from_json(TransformerConfig, DEFAULT_CHECKPOINT / "transformer.json")
    grid = v2.image_size // vae.f
    save_model(
        directory,
        "transformer",
        DalleTransformer(
            replace(
                transformer, grid=grid, text_len=v2.text_len, **{**v2.transformer, **(sizes or {})}
            )
        ),
    )
    clip = config_from_json(ClipConfig, DEFAULT_CHECKPOINT / "clip.json")
    save_model(
        directory, "clip", Clip(replace(clip, image_size=v2.image_size, text_len=v2.text_len))
    )
    return directory


def machine() -> dict:
    return {
        "cpu": device_name(
            "cpu"
        ),  # bf16 matmuls ran at about 1, 335 and 1000 GFLOP/s on the CPUs seen
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "load": load_average(),
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
    sections[name] = (
        f"{notes}\n\nMeasured {m['date']} on {m['cpu']}, torch {m['torch']}, {m['threads']} threads, "
        f"{m['load']} when it ended.\n\n{text}"
    )
    body = "\n\n".join(f"## {k}\n\n{v}" for k, v in sorted(sections.items()))
    results.write_text(
        "# Benchmark results\n\nWritten by the scripts in this folder; each section is replaced "
        "when its script runs again.\n\n" + body + "\n"
    )
