"""One server for both front ends: the OpenAI-style API under /v1 and the Gradio app at /, sharing one model.

`create_app` builds the FastAPI app (serve it with uvicorn); `launch_shared` serves the same
through Gradio's `launch(share=True)`, which is the only way to get a public gradio.live link.
"""

from __future__ import annotations

import re

import gradio as gr
from fastapi import FastAPI
from starlette.routing import Mount

from dalle_core import DEFAULTS, MAX_CANDIDATES, Dalle

from .api import API_PREFIX, MAX_WAITING, create_api
from .app import CSS, build_demo
from .media import refuse_huge_images
from .scheduler import Scheduler

MAX_UPLOAD = "10mb"  # for the app's uploads; the API has its own limits
QUEUE_SIZE = 16  # app requests waiting for the model beyond this are refused


def create_app(
    model: Dalle,
    api_key: str | None = None,
    auth: tuple[str, str] | None = None,
    api_candidates: int = DEFAULTS.candidates,
    max_candidates: int = MAX_CANDIDATES,
    max_waiting: int = MAX_WAITING,
    rate_limit: int | None = None,
) -> FastAPI:
    """A FastAPI app answering the Images API under /v1 and serving the Gradio app at /.

    `api_key` guards /v1 (Bearer token); `auth` (user, password) guards the app's pages. Each API image is
    the best of `api_candidates` samples; `max_candidates` caps the app's slider; when `max_waiting` API
    requests already wait for the model, more get 429; `rate_limit` is the most API image requests per
    minute per client (None: no limit). Both front ends sample through one `Scheduler`, `app.state.scheduler`;
    `app.state.admission` is the API's `Admission`.
    """
    refuse_huge_images()
    scheduler = Scheduler(model)
    app = FastAPI(title="Laptop DALL·E", docs_url=None, redoc_url=None, openapi_url=None)
    mount_api(app, create_api(scheduler, api_key, api_candidates, max_waiting, rate_limit))
    demo = build_demo(scheduler, max_candidates).queue(max_size=QUEUE_SIZE)
    # the /v1 mount must come before Gradio's at "/", or Gradio answers /v1
    return gr.mount_gradio_app(
        app, demo, path="/", auth=auth, css=CSS, max_file_size=MAX_UPLOAD, footer_links=["api"]
    )


def launch_shared(
    model: Dalle,
    host: str,
    port: int,
    share: bool = True,
    api_key: str | None = None,
    auth: tuple[str, str] | None = None,
    api_candidates: int = DEFAULTS.candidates,
    max_candidates: int = MAX_CANDIDATES,
    max_waiting: int = MAX_WAITING,
    rate_limit: int | None = None,
) -> tuple[gr.Blocks, str, str | None]:
    """Serve the app with Gradio's own server (needed for `share=True`) and add the /v1 routes to it.

    Returns (the running Blocks, local URL, public share URL or None) without blocking; call
    `.block_thread()` on the Blocks to wait, `.close()` to stop.
    """
    refuse_huge_images()
    scheduler = Scheduler(model)
    demo = build_demo(scheduler, max_candidates).queue(max_size=QUEUE_SIZE)
    app, local_url, share_url = demo.launch(
        share=share,
        server_name=host,
        server_port=port,
        auth=auth,
        css=CSS,
        max_file_size=MAX_UPLOAD,
        footer_links=["api"],
        prevent_thread_lock=True,
        quiet=True,
    )
    # Gradio's app is already serving: a mount added now comes after its routes, which leave /v1 alone
    mount_api(app, create_api(scheduler, api_key, api_candidates, max_waiting, rate_limit))
    return demo, local_url, share_url


def mount_api(app: FastAPI, api: FastAPI) -> None:
    """Serve the Images API app (`demo.api.create_api`) under /v1 of `app`, before anything mounted at "/" later."""
    app.router.routes.append(_Mount(API_PREFIX, app=api))
    app.state.admission = api.state.admission
    app.state.scheduler = api.state.scheduler


class _Mount(Mount):
    """Starlette's Mount, but its prefix also takes paths with a newline (`%0A`) in them: Starlette's does not
    (its pattern's `.` stops at a newline), so they missed the API and got another app's 404."""

    def __init__(self, path: str, app: FastAPI):
        super().__init__(path, app=app)
        self.path_regex = re.compile(self.path_regex.pattern, re.DOTALL)
