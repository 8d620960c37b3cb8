"""Fair serving in the Gradio app (demo.app) through `gradio_client`, on a real server on loopback: a client that
cancels mid-generation frees the model within a token row, and the next request runs."""

from __future__ import annotations

import time

import pytest
from conftest import LiveServer
from gradio_client import Client

# candidates, images to show, temperature, top-k, top-p, guidance, seed, random seed
LONG = (64, 1, 1.0, 64, 1.0, 3.0, 7, False)  # 4 chunks of 8 rows: 32 rows
SHORT = (1, 1, 1.0, 64, 1.0, 3.0, 7, False)
pytestmark = pytest.mark.filterwarnings("ignore:.*(no_silent_downcasting|copy keyword)")


def test_a_cancelled_generation_frees_the_model_within_a_row(demo_model):
    """The client cancels a 64-candidate generation (32 token rows) after its second row: once Gradio closes the
    callback (withdrawing the request), the model samples at most the row in flight, the request never runs to its
    end, and the next request is served. (Rows are counted from the withdrawal, not from the client's cancel: how
    many rows a fast machine samples while the cancel travels to the server says nothing about the app.)"""
    from demo.server import create_app

    with LiveServer(create_app(demo_model, max_candidates=64)) as server:
        scheduler = server.app.state.scheduler
        withdrawn_at, withdraw = [], scheduler._withdraw

        def recording_withdraw(request) -> None:
            withdrawn_at.append(scheduler.rows_done)
            withdraw(request)

        scheduler._withdraw = recording_withdraw
        # previews are not downloaded: a client that downloads them lags seconds behind the stream, and its cancel
        # reaches the server that late
        app = Client(server.url, verbose=False, analytics_enabled=False, download_files=False)
        job = app.submit("a yellow triangle", *LONG, api_name="/generate")
        deadline = time.monotonic() + 60
        while scheduler.rows_done < 2:
            assert time.monotonic() < deadline, "the generation did not start"
            time.sleep(0.01)
        job.cancel()
        while scheduler.busy or not withdrawn_at:
            assert time.monotonic() < deadline + 60, "the model was not freed"
            time.sleep(0.01)
        after = scheduler.rows_done - withdrawn_at[0]
        print(f"\nrows sampled after the withdrawal: {after}; in all {scheduler.rows_done} of 32")
        assert after <= 1 and scheduler.rows_done < 32
        gallery, status, _ = Client(server.url, verbose=False, analytics_enabled=False).predict(
            "a purple cross", *SHORT, api_name="/generate"
        )
        assert len(gallery) == 1 and "best 1 of 1" in status
        app.close()
