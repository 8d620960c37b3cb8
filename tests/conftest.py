"""Shared fixtures for the demo tests (tests/test_demo_*.py): the model under test and real servers on loopback.

The checkpoint is `$DALLE_TEST_CHECKPOINT`, else the shipped `assets/checkpoint`; a missing one is an
error, not a skip: the shipped weights are part of what is tested.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before the test modules import gradio
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

DEMO_API_KEY = "test-key"
CHROMIUM = "/usr/bin/chromium"  # Debian's: Playwright's own download does not work here
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


class LiveServer:
    """A uvicorn server for an ASGI app, in a thread, on a free loopback port."""

    def __init__(self, app):
        import uvicorn

        self.app = app
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._socket.getsockname()[1]}"
        self._server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )

    def __enter__(self) -> LiveServer:
        self._thread.start()
        deadline = time.monotonic() + 60
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=2)
        if (
            self._thread.is_alive()
        ):  # Gradio's event streams keep connections open: don't wait for them
            self._server.force_exit = True
            self._thread.join(timeout=15)
        self._socket.close()


@pytest.fixture(scope="session")
def demo_checkpoint() -> Path:
    """The checkpoint the demo tests run: $DALLE_TEST_CHECKPOINT or the shipped one."""
    from dalle_core import DEFAULT_CHECKPOINT

    path = Path(os.environ.get("DALLE_TEST_CHECKPOINT", DEFAULT_CHECKPOINT))
    if not path.is_dir():
        pytest.fail(
            f"no checkpoint at {path}: ship one in assets/checkpoint or set DALLE_TEST_CHECKPOINT"
        )
    return path


@pytest.fixture(scope="session")
def demo_model(demo_checkpoint: Path):
    """The `Dalle` facade on the test checkpoint, on the CPU with one thread (the machine is shared)."""
    import torch

    from dalle_core import Dalle

    torch.set_num_threads(1)
    return Dalle(demo_checkpoint, device="cpu")


@pytest.fixture(scope="session")
def demo_server(demo_model) -> Iterator[LiveServer]:
    """`demo.server.create_app` served on loopback: API key `DEMO_API_KEY`, no app password, 4 API candidates,
    and no waiting room for the API (a second concurrent API request gets 429)."""
    from demo.server import create_app

    app = create_app(
        demo_model, api_key=DEMO_API_KEY, api_candidates=4, max_candidates=16, max_waiting=0
    )
    with LiveServer(app) as server:
        yield server


@pytest.fixture(scope="module")
def browser():
    """Chromium, driven by Playwright (the browser tests' modules skip themselves without it)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()
