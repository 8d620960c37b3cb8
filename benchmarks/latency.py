"""Latency of the app's default request and the server's memory, measured on a real demo server, at the shipped
size and at the v2 size (a random-weight checkpoint of the same design with a 12 x 12 grid at 96 px; by default at
the shipped transformer's 4 layers x 192, or at each of `--v2-sizes`).

Usage: python benchmarks/latency.py [--threads 2] [--repeat 5] [--v2-sizes 4x192,8x256]

1. The default request (16 candidates, the best 4 shown, top-k 64, guidance 3): time to the first
   streamed preview and to the final ranked grid, through `Dalle.generate_stream` in this process,
   and end to end through the Gradio API of a `python -m demo` server on loopback (gradio_client).
2. Memory: resident set size (VmRSS) of the shipped model's server idle, and its peak (VmHWM) after serving
   requests of 64 candidates.
3. The latency goals (issues 27 and 30): the final grid through the server within 1 s (shipped) and 2 s (v2).
"""

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from common import goal_row, median_seconds, record, sizes_of, transformer_size, v2_checkpoint

from dalle_core import DEFAULT_CHECKPOINT, Dalle

PROMPT = "two red circles above a blue square"
DEFAULT = {"n": 4, "candidates": 16, "temperature": 1.0, "top_k": 64, "top_p": 1.0, "guidance": 3.0}
TARGETS = {"shipped": 1.0, "v2": 2.0}  # seconds to the final grid through the server, by edition


def first_and_final(stream) -> tuple[float, float]:
    """Seconds to the first item of an iterator and to its end."""
    t0 = time.perf_counter()
    first = None
    for _ in stream:
        if first is None:
            first = time.perf_counter() - t0
    return first, time.perf_counter() - t0


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of a process, in KiB."""
    fields = dict(
        line.split(":", 1)
        for line in Path(f"/proc/{pid}/status").read_text().splitlines()
        if ":" in line
    )
    return {k: int(fields[k].split()[0]) for k in ("VmRSS", "VmHWM")}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def in_process(checkpoint: Path, size: str, repeat: int) -> list[dict]:
    """The default request through `Dalle` in this process: streamed (time to the first preview and to the end),
    and `generate` without previews."""
    model = Dalle(checkpoint, device="cpu")
    for seed in range(2):  # warm-up
        model.generate(PROMPT, seed=seed, **DEFAULT)
    runs = [
        first_and_final(model.generate_stream(PROMPT, seed=s, **DEFAULT)) for s in range(repeat)
    ]
    batch = median_seconds(lambda: model.generate(PROMPT, seed=0, **DEFAULT), repeat=repeat)
    return [
        {
            "size": size,
            "path": "Dalle.generate_stream (in process)",
            "first_preview_s": statistics.median(r[0] for r in runs),
            "final_grid_s": statistics.median(r[1] for r in runs),
        },
        {
            "size": size,
            "path": "Dalle.generate (no previews)",
            "first_preview_s": float("nan"),
            "final_grid_s": batch,
        },
    ]


def through_server(
    checkpoint: Path, size: str, threads: int, repeat: int
) -> tuple[dict, list[dict]]:
    """The default request end to end through a `python -m demo` server's Gradio API; and the server's memory
    idle, after those requests and after requests of 64 candidates."""
    from gradio_client import Client

    port = free_port()
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "OMP_NUM_THREADS": str(threads)}
    server = subprocess.Popen(
        [sys.executable, "-m", "demo", "--port", str(port), "--checkpoint", str(checkpoint)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}/"
        deadline = time.monotonic() + 120
        while True:
            try:
                client = Client(url, analytics_enabled=False, verbose=False, download_files=False)
                break
            except Exception as e:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("the demo server did not start") from e
                time.sleep(0.5)
        idle = memory_kib(server.pid)

        def ui_request(candidates: int, seed: int):
            return client.submit(
                PROMPT, candidates, 4, 1.0, 64, 1.0, 3.0, seed, False, api_name="/generate"
            )

        for seed in range(2):
            ui_request(16, seed).result()
        runs = [first_and_final(ui_request(16, seed)) for seed in range(repeat)]
        row = {
            "size": size,
            "path": "Gradio API via gradio_client (server on loopback)",
            "first_preview_s": statistics.median(r[0] for r in runs),
            "final_grid_s": statistics.median(r[1] for r in runs),
        }
        after_16 = memory_kib(server.pid)
        for seed in range(3):
            ui_request(64, seed).result()
        after_64 = memory_kib(server.pid)
    finally:
        server.kill()
        server.wait()
    mib = 1024
    memory = [
        {
            "server state": "idle, after start",
            "rss_mib": idle["VmRSS"] / mib,
            "peak_rss_mib": idle["VmHWM"] / mib,
        },
        {
            "server state": f"after {2 + repeat} requests of 16",
            "rss_mib": after_16["VmRSS"] / mib,
            "peak_rss_mib": after_16["VmHWM"] / mib,
        },
        {
            "server state": "after 3 requests of 64 candidates",
            "rss_mib": after_64["VmRSS"] / mib,
            "peak_rss_mib": after_64["VmHWM"] / mib,
        },
    ]
    return row, memory


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument(
        "--v2-sizes",
        type=sizes_of,
        default=sizes_of("4x192"),
        help="transformer sizes at the v2 grid",
    )
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    rows, goals, memory = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        checkpoints = {"shipped": DEFAULT_CHECKPOINT} | {
            f"v2 {layers}x{width}": v2_checkpoint(
                f"{tmp}/{layers}x{width}", transformer_size(layers, width)
            )
            for layers, width in a.v2_sizes
        }
        for size, checkpoint in checkpoints.items():
            rows += in_process(checkpoint, size, a.repeat)
            print(*rows[-2:], sep="\n")
            row, mem = through_server(checkpoint, size, a.threads, a.repeat)
            rows.append(row)
            print(row)
            memory = memory or mem  # the shipped model's
            goals.append(
                goal_row(
                    f"final grid through the server, {size}",
                    row["final_grid_s"],
                    f"<= {TARGETS[size.split()[0]]:g}",
                    " s",
                )
            )
    record(
        f"latency-{a.threads}-threads",
        rows,
        f"The app's default request ({DEFAULT['candidates']} candidates, top-k 64, guidance 3, best 4 shown), "
        f"prompt {PROMPT!r}, medians of {a.repeat} after 2 warm-ups, on the shipped checkpoint and on a "
        "random-weight one of the same design with a 12x12 grid at 96 px (v2, at each transformer size: layers x "
        "width). The Gradio path includes the queue, PNG encoding and the HTTP/SSE round trip (the client "
        "receives image URLs and does not download them).",
    )
    record(
        f"memory-{a.threads}-threads",
        memory,
        "Resident memory of a `python -m demo` server process on the shipped weights (VmRSS now, VmHWM the peak "
        "since start), read from /proc.",
    )
    record(
        f"latency_goals-{a.threads}-threads",
        goals,
        "The latency goals (issues 27 and 30), from the `latency` table of this run and thread count.",
    )


if __name__ == "__main__":
    main()
