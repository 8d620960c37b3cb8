"""A bounded load test on loopback: concurrent clients, half through `gradio_client` (the app's /generate
event) and half through the `openai` package (images.generate), send a fixed number of requests to one
server with the production limits (`create_app`'s defaults: a Gradio queue of `QUEUE_SIZE`, one scheduler
sampling concurrent requests together, `max_waiting=16`).

Every request must succeed or get a clear busy answer (HTTP 429 from the API, "queue is full" from
Gradio); none may fail otherwise or outlast its timeout, and the server must answer afterwards. The
figures (outcomes, latency percentiles, the process's RSS before and after: the server runs in this
process) are printed; `DALLE_LOAD_REQUESTS=512 python -m pytest -s tests/test_load.py` is the longer run
whose figures are in docs/reliability.md.
"""

from __future__ import annotations

import os
import statistics
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass

import httpx
import openai
import pytest
from conftest import DEMO_API_KEY, LiveServer
from gradio_client import Client
from gradio_client.utils import QueueError

CLIENTS = int(os.environ.get("DALLE_LOAD_CLIENTS", "16"))  # half Gradio, half OpenAI
REQUESTS = int(
    os.environ.get("DALLE_LOAD_REQUESTS", "48")
)  # in all, split evenly between the clients
TIMEOUT = 120.0  # seconds a request may take before it counts as hung
PROMPTS = [
    "a red circle",
    "two blue squares",
    "a yellow triangle above a green diamond",
    "a purple cross",
]
SETTINGS = (1, 1, 1.0, 64, 1.0, 3.0, 7, False)  # 1 candidate: small, so the test stays short
pytestmark = pytest.mark.filterwarnings(
    "ignore:.*(no_silent_downcasting|copy keyword)"
)  # Gradio's use of pandas


@dataclass
class Outcome:
    """One request: which front end, "ok" / "busy" / what else happened, and how long it took."""

    front: str
    result: str
    seconds: float


def rss_mb() -> float:
    """This process's resident memory in MB (Linux: /proc/self/status)."""
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


@pytest.fixture(scope="module")
def load_server(demo_model) -> Iterator[LiveServer]:
    """The app and the API with the production queue limits, on the session's model, 2 samples per API image."""
    from demo.server import create_app

    with LiveServer(
        create_app(demo_model, api_key=DEMO_API_KEY, api_candidates=2, max_candidates=4)
    ) as server:
        yield server


def gradio_requests(url: str, count: int, seed: int, done: list[Outcome]) -> None:
    """`count` /generate calls, one after the other, by one gradio_client; their outcomes go to `done`."""
    client = Client(url, verbose=False, analytics_enabled=False)

    def call(i: int) -> str:
        gallery, _, _ = client.submit(
            PROMPTS[(seed + i) % len(PROMPTS)], *SETTINGS, api_name="/generate"
        ).result(timeout=TIMEOUT)
        return "ok" if len(gallery) == 1 else f"{len(gallery)} images"

    try:
        for i in range(count):
            done.append(timed("gradio", lambda i=i: call(i)))
    finally:
        client.close()


def openai_requests(url: str, count: int, seed: int, done: list[Outcome]) -> None:
    """`count` images.generate calls by one openai client (every other one asks for a URL and fetches it)."""
    client = openai.OpenAI(
        base_url=f"{url}/v1", api_key=DEMO_API_KEY, max_retries=0, timeout=TIMEOUT
    )

    def call(i: int) -> str:
        as_url = (seed + i) % 2 == 0
        response = client.images.generate(
            prompt=PROMPTS[(seed + i) % len(PROMPTS)],
            n=1,
            size="64x64",
            response_format="url" if as_url else "b64_json",
        )
        if as_url and httpx.get(response.data[0].url, timeout=TIMEOUT).status_code != 200:
            return "url not served"
        return "ok" if len(response.data) == 1 else f"{len(response.data)} images"

    for i in range(count):
        done.append(timed("openai", lambda i=i: call(i)))


def timed(front: str, call: Callable[[], str]) -> Outcome:
    """Run one request; a busy answer is "busy", any other exception is named."""
    started = time.perf_counter()
    try:
        result = call()
    except (
        openai.RateLimitError,
        QueueError,
    ):  # HTTP 429; Gradio's "Queue is full! Please try again."
        result = "busy"
    except Exception as e:
        result = f"{type(e).__name__}: {e}"
    return Outcome(front, result, time.perf_counter() - started)


def percentile(values: list[float], q: float) -> float:
    return (
        statistics.quantiles(values, n=100, method="inclusive")[q - 1]
        if len(values) > 1
        else values[0]
    )


def test_concurrent_gradio_and_openai_clients(load_server: LiveServer):
    per_client = REQUESTS // CLIENTS
    outcomes: list[Outcome] = []  # appended to by the clients' threads as their requests end
    rss = [(0, rss_mb())]  # (requests done, RSS in MB), sampled every second
    started = time.perf_counter()
    with ThreadPoolExecutor(CLIENTS) as pool:
        clients = [
            pool.submit(
                gradio_requests if k % 2 == 0 else openai_requests,
                load_server.url,
                per_client,
                k,
                outcomes,
            )
            for k in range(CLIENTS)
        ]
        while wait(clients, timeout=1.0).not_done:
            rss.append((len(outcomes), rss_mb()))
        for client in clients:
            client.result()  # a client that failed outside a request fails the test
    seconds = time.perf_counter() - started
    rss.append((len(outcomes), rss_mb()))

    counts = Counter((o.front, o.result) for o in outcomes)
    latencies = {
        front: sorted(o.seconds for o in outcomes if o.front == front and o.result == "ok")
        for front in ("gradio", "openai")
    }
    print(f"\n{len(outcomes)} requests from {CLIENTS} clients in {seconds:.1f} s: {dict(counts)}")
    for front, values in latencies.items():
        if values:
            print(
                f"{front}: {len(values)} ok, latency p50 {percentile(values, 50):.2f} s, "
                f"p95 {percentile(values, 95):.2f} s, max {values[-1]:.2f} s"
            )
    quarters = [next(mb for n, mb in rss if n >= len(outcomes) * q / 4) for q in range(5)]
    print(
        f"RSS {quarters[0]:.0f} MB before, then after each quarter of the requests "
        f"{', '.join(f'{mb:.0f}' for mb in quarters[1:])} MB; peak {max(mb for _, mb in rss):.0f} MB"
    )

    assert len(outcomes) == per_client * CLIENTS  # none lost
    unexpected = [o for o in outcomes if o.result not in ("ok", "busy")]
    assert not unexpected, unexpected[:5]
    assert latencies["gradio"] and latencies["openai"]  # both front ends served requests under load
    # the server still answers both front ends
    assert (
        httpx.get(
            f"{load_server.url}/v1/models",
            headers={"Authorization": f"Bearer {DEMO_API_KEY}"},
            timeout=30,
        ).status_code
        == 200
    )
    after: list[Outcome] = []
    gradio_requests(load_server.url, 1, 0, after)
    assert after[0].result == "ok"
