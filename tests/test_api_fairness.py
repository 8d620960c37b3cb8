"""Fair serving on the /v1 API (demo.api), on real servers on loopback driven by the `openai` client: a client
that disconnects stops its model work (within a token row while it runs, at once while it waits), the model
serves waiting requests first come first served (so the wait is bounded), and the optional per-client rate limit
(`dalle-demo --rate-limit N/min`).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import openai
import pytest
from conftest import DEMO_API_KEY, LiveServer

from demo.api import Busy, ModelGate, RateLimit

PROMPT = "a red circle above a blue square"


def client(server: LiveServer, timeout: float = 120, **headers: str) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{server.url}/v1",
        api_key=DEMO_API_KEY,
        max_retries=0,
        timeout=timeout,
        default_headers=headers,
    )


def generate(api: openai.OpenAI):
    return api.images.generate(prompt=PROMPT, n=1, size="64x64", response_format="b64_json")


def wait_until(condition: Callable[[], bool], seconds: float) -> float:
    """Seconds until `condition()` held (polled every 10 ms); fails after `seconds`."""
    started = time.perf_counter()
    while not condition():
        assert time.perf_counter() - started < seconds, f"not within {seconds:.1f} s"
        time.sleep(0.01)
    return time.perf_counter() - started


@contextmanager
def holding(gate: ModelGate) -> Iterator[None]:
    """Occupies the model (through the gate, as a request would) while in the `with` block."""
    release, running = threading.Event(), threading.Event()
    holder = threading.Thread(target=gate.run, args=(lambda: (running.set(), release.wait(60)),))
    holder.start()
    try:
        assert running.wait(10)
        yield
    finally:
        release.set()
        holder.join()


@pytest.fixture(scope="module")
def slow_server(demo_model) -> Iterator[LiveServer]:
    """32 samples per API image (a request takes seconds here), one waiting place."""
    from demo.server import create_app

    with LiveServer(
        create_app(
            demo_model, api_key=DEMO_API_KEY, api_candidates=32, max_candidates=4, max_waiting=1
        )
    ) as server:
        yield server


# ------------------------------------------------------------------ disconnects


def test_a_client_that_disconnects_stops_its_model_work_within_a_row(
    slow_server: LiveServer, caplog
):
    """The openai client gives up (its timeout) an eighth of the way through a request: the model call stops at
    the end of the row it is on, and the model is free again long before all the rows would be done."""
    caplog.set_level(logging.INFO, logger="demo.api")
    gate = slow_server.app.state.model_gate
    started = time.perf_counter()
    generate(client(slow_server))
    whole = time.perf_counter() - started  # one request, all its rows
    assert gate.busy == 0
    with pytest.raises(openai.APITimeoutError):
        generate(client(slow_server, timeout=whole / 8))
    assert gate.busy == 1  # the model is still on it when the client leaves
    freed = wait_until(lambda: gate.busy == 0, 2 * whole)

    def logged() -> list[str]:  # the server logs it once the worker thread has handed back
        return [
            r.getMessage() for r in caplog.records if "the client disconnected" in r.getMessage()
        ]

    wait_until(logged, 5.0)
    stops = logged()
    print(f"\nwhole request {whole:.2f} s; model free {freed:.2f} s after the client left; {stops}")
    assert len(stops) == 1 and re.search(
        r"stopped after [1-7] of 8 rows", stops[0]
    )  # (the load varies)
    assert freed < whole / 2  # the rows left would take most of it


def test_a_client_that_disconnects_while_waiting_leaves_the_queue(slow_server: LiveServer):
    """While the model is busy, a waiting request whose client leaves gives its place up at once, and never runs."""
    gate = slow_server.app.state.model_gate
    with holding(gate):
        with pytest.raises(openai.APITimeoutError):
            generate(client(slow_server, timeout=1.0))
        wait_until(lambda: gate.busy == 1, 1.0)  # only the holder is left
        # so the one waiting place is free: a new request waits there (it times out) rather than getting 429
        with pytest.raises(openai.APITimeoutError):
            generate(client(slow_server, timeout=1.0))
        wait_until(lambda: gate.busy == 1, 1.0)
    assert gate.busy == 0  # released: nothing else was left to run


# ------------------------------------------------------------------ first come, first served


def test_the_gate_serves_waiting_calls_in_arrival_order():
    """So a request that gets a waiting place waits for at most `max_waiting` others and the running one."""
    gate, order = ModelGate(max_waiting=4), []
    with holding(gate):
        waiters = []
        for i in range(4):
            waiters.append(threading.Thread(target=gate.run, args=(lambda i=i: order.append(i),)))
            waiters[-1].start()
            wait_until(lambda i=i: gate.busy == i + 2, 5.0)
        with pytest.raises(Busy):
            gate.run(lambda: order.append("refused"))
    for waiter in waiters:
        waiter.join(10)
    assert order == [0, 1, 2, 3] and gate.busy == 0


# ------------------------------------------------------------------ rate limits


def test_rate_limit_per_client(demo_model):
    """2 image requests per minute per client: the third gets 429 with Retry-After; another client (another address,
    as a proxy the server trusts reports it in X-Forwarded-For) and the other routes are not limited."""
    from demo.server import create_app

    with LiveServer(
        create_app(demo_model, api_key=DEMO_API_KEY, api_candidates=1, rate_limit=2)
    ) as server:
        first = client(server)
        for _ in range(2):
            assert len(generate(first).data) == 1
        with pytest.raises(
            openai.RateLimitError, match="at most 2 image requests per minute per client"
        ) as e:
            generate(first)
        assert (
            e.value.code == "rate_limit_exceeded"
            and 0 < int(e.value.response.headers["Retry-After"]) <= 60
        )
        assert [m.id for m in first.models.list()] == ["laptop-dalle"]
        assert len(generate(client(server, **{"X-Forwarded-For": "203.0.113.7"})).data) == 1


def test_rate_limit_window_slides():
    limit = RateLimit(2, period=0.3)
    assert limit.admit("a") == 0 and limit.admit("a") == 0 and limit.admit("b") == 0
    assert (
        0 < limit.admit("a") <= 0.3
    )  # refused: seconds until the oldest request leaves the window
    time.sleep(0.35)
    assert limit.admit("a") == 0


@pytest.mark.parametrize(
    "args, rate",
    [
        ([], 0),
        (["--host", "0.0.0.0"], 10),
        (["--share"], 10),
        (["--host", "0.0.0.0", "--rate-limit", "off"], 0),
        (["--rate-limit", "30/min"], 30),
        (["--rate-limit", "5"], 5),
    ],
)
def test_dalle_demo_rate_limit_option(args: list[str], rate: int):
    """Off by default when only this computer can reach the server, on when others can."""
    from demo.__main__ import parse_args

    assert parse_args(args).rate_limit == rate


@pytest.mark.parametrize("bad", ["0/min", "-1/min", "ten/min", "5/hour"])
def test_dalle_demo_refuses_bad_rate_limits(bad: str):
    from demo.__main__ import parse_args

    with pytest.raises(SystemExit):
        parse_args(["--rate-limit", bad])
