"""Throughput and latency under concurrent clients: a real `python -m demo` server on loopback, and 1, 4 and 16
clients calling `images.generate` through the `openai` package (default n and size), each sending its next request
as soon as the last is answered.

Usage: python benchmarks/load.py [--seconds 30] [--clients 1,4,16] [--api-candidates 16] [--threads 1]

Concurrent requests share sampling passes (`demo.scheduler`), so the images per second should grow with the
clients (issue 27's goal: >= 3x one client's at 16 clients); p50 / p95 are the requests' latencies in seconds.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import threading
import time

import openai
import torch
from common import record

KEY = "load-key"
PROMPTS = [
    "a red circle",
    "two blue squares",
    "a yellow triangle above a green diamond",
    "a purple cross to the left of a large cyan circle",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(port: int, api_candidates: int, threads: int) -> subprocess.Popen:
    """`python -m demo` on loopback, once it answers."""
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "OMP_NUM_THREADS": str(threads)}
    server = subprocess.Popen(
        [sys.executable, "-m", "demo", "--port", str(port), "--api-key", KEY]
        + ["--api-candidates", str(api_candidates)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    api = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=KEY, max_retries=0)
    deadline = time.monotonic() + 180
    while True:
        try:
            api.models.list()
            return server
        except openai.APIConnectionError:
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(
                    f"the server did not start: {server.stderr.read().decode()[-2000:]}"
                ) from None
            time.sleep(0.5)


def run_clients(url: str, clients: int, seconds: float) -> tuple[int, list[float], float]:
    """Each client sends requests back to back for `seconds` (its last one may end later): the images received,
    every request's latency, and the wall time until the last answer."""
    latencies: list[float] = []
    images = 0
    lock = threading.Lock()
    stop_at = time.perf_counter() + seconds

    def client(i: int) -> None:
        nonlocal images
        api = openai.OpenAI(base_url=url, api_key=KEY, max_retries=0, timeout=300)
        k = i
        while time.perf_counter() < stop_at:
            started = time.perf_counter()
            result = api.images.generate(prompt=PROMPTS[k % len(PROMPTS)])
            with lock:
                latencies.append(time.perf_counter() - started)
                images += len(result.data)
            k += 1

    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return images, latencies, time.perf_counter() - started


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=30, help="how long each client count runs")
    p.add_argument("--clients", default="1,4,16", help="client counts, comma-separated")
    p.add_argument("--api-candidates", type=int, default=16, help="samples per API image")
    p.add_argument("--threads", type=int, default=1, help="the server's torch threads")
    a = p.parse_args()
    torch.set_num_threads(a.threads)  # as the server's, so that the record names it
    port = free_port()
    url = f"http://127.0.0.1:{port}/v1"
    server = start_server(port, a.api_candidates, a.threads)
    rows = []
    try:
        run_clients(url, 2, 3)  # warm-up
        for clients in [int(c) for c in a.clients.split(",")]:
            images, latencies, wall = run_clients(url, clients, a.seconds)
            q = statistics.quantiles(latencies, n=20) if len(latencies) > 1 else latencies * 19
            rows.append(
                {
                    "clients": clients,
                    "requests": len(latencies),
                    "images_per_s": images / wall,
                    "p50_s": statistics.median(latencies),
                    "p95_s": q[18],
                }
            )
            rows[-1]["ratio_to_1"] = rows[-1]["images_per_s"] / rows[0]["images_per_s"]
            print(rows[-1], flush=True)
    finally:
        server.terminate()
        server.wait(timeout=30)
    record(
        "load",
        rows,
        f"A `python -m demo` server ({a.threads} thread(s), `--api-candidates {a.api_candidates}`) on loopback; "
        f"each client calls `images.generate` (n = 1, 1024x1024, url) back to back for {a.seconds:g} s. "
        "images/s counts images received over the wall time until the last answer; p50 / p95 are request "
        "latencies; ratio_to_1 is images/s over the first row's (issue 27: >= 3 at 16 clients).",
    )


if __name__ == "__main__":
    main()
