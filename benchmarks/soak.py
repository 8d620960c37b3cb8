"""Memory over time: a real `python -m demo` server on loopback answers thousands of mixed requests, one at
a time, and its resident memory (VmRSS) is read every `--every` requests.

Usage: python benchmarks/soak.py [--requests 3000] [--every 250] [--threads 1]

The mix, in turn: API generations (b64_json at 64 px; url at 256 px, then the file fetched), API edits,
requests the API refuses (400), GET /v1/models, and the app's /generate event through `gradio_client`
(a new client, so a new Gradio session, every 50 app requests). Every generation samples one candidate
(`--api-candidates 1` and the app's candidates slider at 1), so the figures are about memory, not speed.
After warm-up (the first quarter of the requests) RSS should stay flat: the table gives RSS at each reading
and the growth per 1000 requests over the second half.
"""

from __future__ import annotations

import argparse
import base64
import io
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import torch
from common import record, table
from gradio_client import Client
from PIL import Image

KEY = "soak-key"
PROMPTS = [
    "a red circle",
    "two blue squares",
    "a yellow triangle above a green diamond",
    "a purple cross",
]
APP_SETTINGS = (
    1,
    1,
    1.0,
    64,
    1.0,
    3.0,
    7,
    False,
)  # candidates, shown, temperature, top-k, top-p, guidance, seed, random


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return (
        int(next(line for line in status.splitlines() if line.startswith("VmRSS:")).split()[1])
        / 1024
    )


def png(size: int, transparent_corner: bool) -> bytes:
    image = Image.new("RGBA", (size, size), (255, 255, 255, 255))
    if transparent_corner:
        image.paste((0, 0, 0, 0), (size // 2, size // 2, size, size))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=3000)
    p.add_argument("--every", type=int, default=250, help="read RSS every this many requests")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)  # as the server's, so that the record names it

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "OMP_NUM_THREADS": str(a.threads)}
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "demo",
            "--port",
            str(port),
            "--api-key",
            KEY,
            "--api-candidates",
            "1",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {KEY}"}, timeout=120)
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if http.get("/v1/models").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(
                    f"the server did not start: {server.stderr.read().decode()[-2000:]}"
                )
            time.sleep(0.5)
        image, mask = png(256, False), png(256, True)
        app: Client | None = None
        app_calls = 0
        readings, counts = [], {}
        t0 = time.perf_counter()
        for i in range(a.requests):
            kind = ("b64", "url", "edit", "bad", "models", "app")[i % 6]
            prompt = PROMPTS[i % len(PROMPTS)]
            if kind == "b64":
                r = http.post(
                    "/v1/images/generations",
                    json={"prompt": prompt, "size": "64x64", "response_format": "b64_json"},
                )
                ok = (
                    r.status_code == 200
                    and base64.b64decode(r.json()["data"][0]["b64_json"])[:4] == b"\x89PNG"
                )
            elif kind == "url":
                r = http.post("/v1/images/generations", json={"prompt": prompt, "size": "256x256"})
                ok = (
                    r.status_code == 200 and http.get(r.json()["data"][0]["url"]).status_code == 200
                )
            elif kind == "edit":
                r = http.post(
                    "/v1/images/edits",
                    data={"prompt": prompt, "size": "64x64", "response_format": "b64_json"},
                    files={
                        "image": ("i.png", image, "image/png"),
                        "mask": ("m.png", mask, "image/png"),
                    },
                )
                ok = r.status_code == 200
            elif kind == "bad":
                ok = http.post("/v1/images/generations", json={"prompt": ""}).status_code == 400
            elif kind == "models":
                ok = http.get("/v1/models").status_code == 200
            else:
                if app_calls % 50 == 0:  # a new client: a new Gradio session
                    if app is not None:
                        app.close()
                    app = Client(url, verbose=False, analytics_enabled=False)
                gallery, _, _ = app.predict(prompt, *APP_SETTINGS, api_name="/generate")
                ok = len(gallery) == 1
                app_calls += 1
            counts[kind, ok] = counts.get((kind, ok), 0) + 1
            if (i + 1) % a.every == 0 or i == 0:
                readings.append(
                    {
                        "requests": i + 1,
                        "rss_mib": round(rss_mib(server.pid), 1),
                        "seconds": round(time.perf_counter() - t0, 1),
                    }
                )
                print(readings[-1], flush=True)
        if app is not None:
            app.close()
    finally:
        http.close()
        server.terminate()
        server.wait(timeout=30)
    failed = {k: v for k, v in counts.items() if not k[1]}
    half = [r for r in readings if r["requests"] >= a.requests // 2]
    growth = (
        (half[-1]["rss_mib"] - half[0]["rss_mib"])
        / max(half[-1]["requests"] - half[0]["requests"], 1)
        * 1000
    )
    print(table(readings))
    print(
        f"failed requests: {failed or 'none'}; growth over the second half: {growth:.2f} MiB per 1000 requests"
    )
    record(
        "soak",
        readings,
        f"A `python -m demo` server (one thread, `--api-candidates 1`) answered {a.requests} "
        "mixed requests one at a time (API b64_json and url generations with the file fetched, edits, refused "
        "requests, model lists, and the app's /generate through gradio_client, a new client every 50 app "
        f"requests). Failed: {failed or 'none'}. RSS growth over the second half: {growth:.2f} MiB per 1000 "
        "requests.",
    )


if __name__ == "__main__":
    main()
