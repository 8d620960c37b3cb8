"""Fair serving on the /v1 API (demo.api) and its scheduler (demo.scheduler), on real servers on loopback driven by
the `openai` client: a client that disconnects stops its model work (within a token row while it runs, at once
while it waits), a 64-candidate request delays a short one by at most one pass, and the optional per-client rate
limit (`dalle-demo --rate-limit N/min`).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterator

import openai
import pytest
from conftest import DEMO_API_KEY, LiveServer

from demo.api import RateLimit
from demo.scheduler import Cancelled, Scheduler

PROMPT = "a red circle above a blue square"


def client(server: LiveServer, timeout: float = 120, **headers: str) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{server.url}/v1",
        api_key=DEMO_API_KEY,
        max_retries=0,
        timeout=timeout,
        default_headers=headers,
    )


def generate(api: openai.OpenAI, prompt: str = PROMPT):
    return api.images.generate(prompt=prompt, n=1, size="64x64", response_format="b64_json")


def wait_until(condition: Callable[[], bool], seconds: float) -> float:
    """Seconds until `condition()` held (polled every 10 ms); fails after `seconds`."""
    started = time.perf_counter()
    while not condition():
        assert time.perf_counter() - started < seconds, f"not within {seconds:.1f} s"
        time.sleep(0.01)
    return time.perf_counter() - started


@pytest.fixture(scope="module")
def slow_server(demo_model) -> Iterator[LiveServer]:
    """32 samples per API image (two chunks: a request takes seconds here), one waiting place."""
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
    the end of the row it is on (at most one row after the last one it was handed), long before its 16 rows."""
    caplog.set_level(logging.INFO, logger="demo.api")
    scheduler = slow_server.app.state.scheduler
    started = time.perf_counter()
    generate(client(slow_server))
    whole = time.perf_counter() - started  # one request, all its rows
    assert scheduler.busy == 0
    rows_before = scheduler.rows_done
    with pytest.raises(openai.APITimeoutError):
        generate(client(slow_server, timeout=whole / 8))
    freed = wait_until(lambda: scheduler.busy == 0, 2 * whole)

    def logged() -> list[str]:  # the server logs it once the worker thread has handed back
        return [
            r.getMessage() for r in caplog.records if "the client disconnected" in r.getMessage()
        ]

    wait_until(logged, 5.0)
    stops = logged()
    sampled = scheduler.rows_done - rows_before
    print(f"\nwhole request {whole:.2f} s; model free {freed:.2f} s after the client left; {stops}")
    handed = re.search(r"stopped after (\d+) rows", stops[0])
    assert len(stops) == 1 and handed, stops
    assert (
        sampled <= int(handed.group(1)) + 1 < 16
    )  # the row it was on when the client left, no more


def test_a_request_withdrawn_while_waiting_never_runs(demo_model):
    """A request closed before its first pass leaves the queue at once: it is never sampled."""
    scheduler = Scheduler(demo_model)
    long = scheduler.generate_stream(PROMPT, n=1, candidates=64, seed=0)
    next(long)  # its first pass runs
    short = scheduler.generate_stream("a purple cross", n=1, candidates=1, guidance=1.0, seed=0)
    short.close()
    with pytest.raises(Cancelled, match="before it ran"):
        next(short)
    assert scheduler.busy == 1
    results = [p.results for p in long if p.results]
    assert len(results) == 1 and scheduler.busy == 0
    assert all(
        label != "a purple cross" for record in scheduler.history for label, _ in record.requests
    )


def test_previews_of_a_chunked_request_keep_the_finished_chunks(demo_model):
    """A request of more candidates than a chunk previews every candidate so far: the finished chunks' images,
    then the running chunk's previews, so the app's "candidate 17" is the seventeenth candidate."""
    scheduler = Scheduler(demo_model, chunk=4)
    updates = list(scheduler.generate_stream(PROMPT, n=6, candidates=6, top_k=8, seed=3))
    rows = demo_model.grid
    first, second, last = updates[rows - 1], updates[rows], updates[-1]
    assert [len(u.previews) for u in (updates[0], first, second)] == [4, 4, 6]
    assert all((a == b).all() for a, b in zip(first.previews, second.previews[:4], strict=True))
    assert all((a == b).all() for a, b in zip(first.previews, last.previews[:4], strict=True))
    assert second.rows_done == rows + 1 and second.rows_total == 2 * rows


# ------------------------------------------------------------------ a bounded wait


def test_requests_with_other_settings_run_in_passes_of_their_own(demo_model):
    """Requests share a pass only when their sampling settings match (the sampler takes one temperature, top-k,
    top-p and guidance per call): an unguided request among guided ones is sampled alone."""
    scheduler = Scheduler(demo_model)
    long = scheduler.generate_stream("a yellow triangle", n=1, candidates=32, seed=0)
    next(long)  # its first pass runs
    unguided = scheduler.generate_stream("a purple cross", n=1, candidates=1, guidance=1.0)
    guided = scheduler.generate_stream("a red circle", n=1, candidates=1)
    for ticket in (long, unguided, guided):
        assert [p.results for p in ticket][-1]
    passes = [sorted(label for label, _ in p.requests) for p in scheduler.history]
    assert ["a purple cross"] in passes  # alone: the others are guided
    assert all(p == ["a purple cross"] for p in passes if "a purple cross" in p)


def test_a_long_request_delays_a_short_one_by_at_most_one_pass(demo_model):
    """The app's 64-candidate request (4 chunks of 16, one per pass) is being sampled when a 1-candidate API request
    comes: the short one is in the first pass that starts after it came, so it waited for the pass in flight
    only, and it finishes before the long one."""
    from gradio_client import Client

    from demo.server import create_app

    app_settings = (
        64,
        1,
        1.0,
        64,
        1.0,
        3.0,
        7,
        False,
    )  # the API's sampling settings: they share passes
    with LiveServer(create_app(demo_model, api_key=DEMO_API_KEY, api_candidates=1)) as server:
        scheduler = server.app.state.scheduler
        app = Client(server.url, verbose=False, analytics_enabled=False, download_files=False)
        long = app.submit("a yellow triangle", *app_settings, api_name="/generate")
        wait_until(lambda: scheduler.rows_done > 0, 60)  # the long request's first pass is running
        generate(client(server), "a purple cross")
        short_done = time.monotonic()
        long.result(timeout=120)
        long_done = time.monotonic()
        app.close()
    passes = list(scheduler.history)
    print("\n" + "\n".join(f"{p.started:.2f}: {p.seconds:.2f} s, {p.requests}" for p in passes))
    in_long = [p for p in passes if any(label == "a yellow triangle" for label, _ in p.requests)]
    in_short = [p for p in passes if any(label == "a purple cross" for label, _ in p.requests)]
    assert short_done < long_done
    assert len(in_long) == 4 and len(in_short) == 1
    ((_, came),) = [r for r in in_short[0].requests if r[0] == "a purple cross"]
    assert in_short[0] is next(
        p for p in passes if p.started >= came
    )  # the first pass after it came
    assert (
        in_short[0] is not in_long[-1]
    )  # so the long one had a pass left when the short one was done


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
