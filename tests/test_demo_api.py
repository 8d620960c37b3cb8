"""The OpenAI-compatible Images API (demo.api) on a real server on loopback, driven by real clients.

The current `openai` package generates and edits. openai 0.28 (the classic `openai.Image.create`
scripts) cannot be installed beside it, so its requests are reproduced with httpx as its source
sends them (`openai/api_resources/image.py` and `api_requestor.py` of 0.28.1): the same URLs,
authorization, JSON body for generations and multipart parts for edits.
"""

from __future__ import annotations

import base64
import io
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest
from conftest import DEMO_API_KEY, LiveServer
from PIL import Image

SCENE = Path(__file__).resolve().parent.parent / "assets" / "examples" / "scene-38.png"
# the scene is a 64 px image enlarged 4x: the server gives the model exactly these pixels
SCENE_PIXELS = np.asarray(Image.open(SCENE).convert("RGB"))[::4, ::4]


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    assert image.format == "PNG"
    return image


def corner_mask(size: int, start: int) -> Image.Image:
    """An RGBA mask, opaque except the fully transparent square from (start, start) to the bottom-right corner."""
    alpha = np.full((size, size), 255, np.uint8)
    alpha[start:, start:] = 0
    return Image.fromarray(np.dstack([np.zeros((size, size, 3), np.uint8), alpha]), "RGBA")


def assert_kept_outside(result: Image.Image, original: np.ndarray, start: int) -> None:
    """The pixels above and left of the redrawn rectangle (from `start`, in 64 px terms) are the original's."""
    out = np.asarray(result.convert("RGB"))
    assert out.shape == original.shape
    assert (out[:start] == original[:start]).all() and (out[:, :start] == original[:, :start]).all()


@pytest.fixture(scope="module")
def client(demo_server: LiveServer) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{demo_server.url}/v1", api_key=DEMO_API_KEY, max_retries=0, timeout=120
    )


def post(
    demo_server: LiveServer, path: str, key: str | None = DEMO_API_KEY, **kwargs
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.post(f"{demo_server.url}{path}", headers=headers, timeout=120, **kwargs)


def assert_error(
    response: httpx.Response, status: int, param: str | None = None, words: str = ""
) -> dict:
    """The response is an OpenAI-format error with this status (and param, and words in its message)."""
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["param"] == param
    assert words.lower() in error["message"].lower()
    return error


# ------------------------------------------------------------------ the current openai client


def test_models_list(client: openai.OpenAI):
    assert [m.id for m in client.models.list()] == ["laptop-dalle"]


def test_generate_urls_serve_enlarged_pngs(client: openai.OpenAI):
    response = client.images.generate(prompt="a red circle", n=2, size="256x256")
    assert len(response.data) == 2 and response.created > 0
    for item in response.data:
        assert item.url.startswith("http://127.0.0.1:") and "/v1/files/" in item.url
        got = httpx.get(item.url, timeout=30)  # the URL needs no API key: its random id is the key
        assert got.status_code == 200 and got.headers["content-type"] == "image/png"
        image = decode(got.content)
        assert image.size == (256, 256)
        native = np.asarray(image.convert("RGB"))[::4, ::4]
        assert (
            np.asarray(image.convert("RGB")) == native.repeat(4, 0).repeat(4, 1)
        ).all()  # square pixels


def test_generate_b64_at_native_size_more_than_api_candidates(client: openai.OpenAI):
    # the server samples max(api_candidates=4, n) candidates, so 6 images can be asked for
    response = client.images.generate(
        prompt="two blue squares",
        n=6,
        size="64x64",
        response_format="b64_json",
        model="dall-e-2",
        user="someone",
    )
    images = [decode(base64.b64decode(item.b64_json)) for item in response.data]
    assert len(images) == 6 and all(im.size == (64, 64) for im in images)


def test_edit_with_mask_keeps_the_rest(client: openai.OpenAI):
    response = client.images.edit(
        image=("scene.png", SCENE.read_bytes(), "image/png"),
        mask=("mask.png", png(corner_mask(256, 128)), "image/png"),
        prompt="a pink circle above a large blue square",
        n=2,
        size="64x64",
        response_format="b64_json",
    )
    assert len(response.data) == 2
    for item in response.data:
        assert_kept_outside(decode(base64.b64decode(item.b64_json)), SCENE_PIXELS, 32)


def test_edit_uses_the_image_transparency_without_mask(client: openai.OpenAI, demo_model):
    scene = Image.open(SCENE).convert("RGBA")
    scene.putalpha(
        corner_mask(256, 160).getchannel("A")
    )  # transparent from 160 px: snapped to cell 5 (40 px)
    original = demo_model.prepare_image(scene)
    # a list of images is sent as `image[]`
    response = client.images.edit(
        image=[("scene.png", png(scene), "image/png")],
        prompt="a pink circle",
        size="64x64",
        response_format="b64_json",
    )
    assert_kept_outside(decode(base64.b64decode(response.data[0].b64_json)), original, 40)


def test_client_errors_are_raised_with_the_message(client: openai.OpenAI, demo_server: LiveServer):
    with pytest.raises(openai.BadRequestError, match="prompt is missing or empty"):
        client.images.generate(prompt="   ")
    wrong = openai.OpenAI(base_url=f"{demo_server.url}/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError, match="Incorrect API key"):
        wrong.images.generate(prompt="a red circle")


# ------------------------------------------------------------------ openai 0.28, as it sends requests


def legacy_headers() -> dict[str, str]:
    """The headers of openai 0.28.1's APIRequestor (api_requestor.py: request_headers)."""
    return {
        "X-OpenAI-Client-User-Agent": json.dumps(
            {
                "bindings_version": "0.28.1",
                "httplib": "requests",
                "lang": "python",
                "publisher": "openai",
            }
        ),
        "User-Agent": "OpenAI/v1 PythonBindings/0.28.1",
        "Authorization": f"Bearer {DEMO_API_KEY}",
    }


def test_openai_028_image_create(demo_server: LiveServer):
    """openai.api_base = f"{url}/v1"; openai.Image.create(prompt=..., n=1, size="256x256"): a JSON POST."""
    body = json.dumps(
        {"prompt": "a yellow triangle above a green diamond", "n": 1, "size": "256x256"}
    )
    response = httpx.post(
        f"{demo_server.url}/v1/images/generations",
        content=body,
        timeout=120,
        headers={**legacy_headers(), "Content-Type": "application/json"},
    )
    assert response.status_code == 200
    url = response.json()["data"][0]["url"]
    assert decode(httpx.get(url).content).size == (256, 256)


def test_openai_028_image_create_edit(demo_server: LiveServer):
    """openai.Image.create_edit(image=f, mask=m, prompt=..., n=1, size=...): fields as (None, value) parts and
    files named "image" and "mask" as application/octet-stream (api_resources/image.py: _prepare_create_edit)."""
    files = [
        ("prompt", (None, "a pink circle above a large blue square")),
        ("n", (None, "1")),
        ("size", (None, "64x64")),
        ("response_format", (None, "b64_json")),
        ("image", ("image", SCENE.read_bytes(), "application/octet-stream")),
        ("mask", ("mask", png(corner_mask(256, 128)), "application/octet-stream")),
    ]
    response = httpx.post(
        f"{demo_server.url}/v1/images/edits", files=files, headers=legacy_headers(), timeout=120
    )
    assert response.status_code == 200, response.text
    result = decode(base64.b64decode(response.json()["data"][0]["b64_json"]))
    assert_kept_outside(result, SCENE_PIXELS, 32)


# ------------------------------------------------------------------ bad requests: OpenAI-format errors


@pytest.mark.parametrize(
    "fields, param, words",
    [
        ({"prompt": ""}, "prompt", "empty"),
        ({}, "prompt", "missing"),
        ({"prompt": "x" * 1001}, "prompt", "too long"),
        ({"prompt": "a red circle", "n": 0}, "n", "between 1 and 10"),
        ({"prompt": "a red circle", "n": 11}, "n", "between 1 and 10"),
        ({"prompt": "a red circle", "n": "abc"}, "n", "'abc'"),
        ({"prompt": "a red circle", "n": 1.5}, "n", "integer"),
        (
            {"prompt": "a red circle", "size": "100x100"},
            "size",
            "64x64, 96x96, 256x256, 512x512, 1024x1024",
        ),
        ({"prompt": "a red circle", "size": [64, 64]}, "size", "one of"),
        ({"prompt": "a red circle", "size": "96x96"}, "size", "ask for 64x64 (its own resolution)"),
        ({"prompt": "a red circle", "response_format": "jpeg"}, "response_format", "b64_json"),
    ],
)
def test_generation_rejects_bad_fields(
    demo_server: LiveServer, fields: dict, param: str, words: str
):
    error = assert_error(
        post(demo_server, "/v1/images/generations", json=fields), 400, param, words
    )
    assert error["type"] == "invalid_request_error"


def test_generation_rejects_a_body_that_is_not_json(demo_server: LiveServer):
    assert_error(
        post(demo_server, "/v1/images/generations", content=b"prompt=a red circle"),
        400,
        None,
        "JSON",
    )


def edit(
    demo_server: LiveServer, image: bytes, mask: bytes | None = None, **fields
) -> httpx.Response:
    files = [("image", ("image.png", image, "image/png"))]
    if mask is not None:
        files.append(("mask", ("mask.png", mask, "image/png")))
    return post(
        demo_server, "/v1/images/edits", files=files, data={"prompt": "a red circle", **fields}
    )


def test_edit_rejects_bad_uploads(demo_server: LiveServer):
    scene = SCENE.read_bytes()
    assert_error(edit(demo_server, b"this is not an image"), 400, "image", "not an image")
    assert_error(
        edit(demo_server, scene), 400, "image", "no transparent pixels"
    )  # no mask, no alpha
    assert_error(edit(demo_server, scene, png(corner_mask(128, 64))), 400, "mask", "same size")
    assert_error(
        edit(demo_server, scene, png(Image.open(SCENE).convert("RGB"))), 400, "mask", "alpha"
    )
    assert_error(
        edit(demo_server, scene, png(corner_mask(256, 256))), 400, "mask", "no fully transparent"
    )
    assert_error(edit(demo_server, scene, png(corner_mask(256, 128)), n="abc"), 400, "n", "'abc'")
    assert_error(
        post(demo_server, "/v1/images/edits", data={"prompt": "a red circle"}),
        400,
        None,
        "multipart",
    )
    files = [("image", ("a.png", scene, "image/png")), ("image[]", ("b.png", scene, "image/png"))]
    response = post(demo_server, "/v1/images/edits", files=files, data={"prompt": "a red circle"})
    assert_error(response, 400, "image", "one image at a time")


def test_too_large_upload_is_413(demo_server: LiveServer):
    big = b"\0" * (9 * 2**20)
    assert_error(edit(demo_server, big), 413, None, "too large")


@pytest.mark.parametrize("key, code", [(None, None), ("wrong", "invalid_api_key")])
def test_missing_or_wrong_api_key_is_401(
    demo_server: LiveServer, key: str | None, code: str | None
):
    response = post(demo_server, "/v1/images/generations", key=key, json={"prompt": "a red circle"})
    assert assert_error(response, 401)["code"] == code
    assert httpx.get(f"{demo_server.url}/v1/models").status_code == 401


def test_unknown_routes_and_files_are_404(demo_server: LiveServer):
    assert_error(post(demo_server, "/v1/images/variations", json={}), 404, None, "invalid url")
    assert_error(httpx.get(f"{demo_server.url}/v1/images/generations"), 404, None, "invalid url")
    assert_error(
        httpx.get(f"{demo_server.url}/v1/files/no-such-image.png"), 404, None, "no such image"
    )


def test_busy_model_is_429(demo_server: LiveServer):
    """The test server lets one API request at the model at a time: while one is there, another gets 429 at once."""
    with demo_server.app.state.admission.enter():
        response = post(demo_server, "/v1/images/generations", json={"prompt": "a red circle"})
        assert assert_error(response, 429)["code"] == "rate_limit_exceeded"


# ------------------------------------------------------------------ server wiring


def test_app_password_guards_the_app_not_the_api(demo_model):
    """--auth protects Gradio's pages; the /v1 routes answer (here without an API key) beside them."""
    from demo.server import create_app

    with LiveServer(create_app(demo_model, auth=("user", "secret"), api_candidates=1)) as server:
        assert httpx.get(f"{server.url}/config").status_code == 401
        assert httpx.get(f"{server.url}/v1/models").status_code == 200


def test_launch_path_for_share_links_serves_the_api(demo_model):
    """`--share` goes through Gradio's launch(); the same code with share=False (no internet here)."""
    from demo.server import launch_shared

    with socket.socket() as probe:  # Gradio's launch() wants a port number: find a free one
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    demo, local_url, share_url = launch_shared(
        demo_model, "127.0.0.1", port, share=False, api_key=DEMO_API_KEY, api_candidates=1
    )
    try:
        assert share_url is None
        response = httpx.post(
            f"{local_url.rstrip('/')}/v1/images/generations",
            timeout=60,
            headers={"Authorization": f"Bearer {DEMO_API_KEY}"},
            json={"prompt": "a red circle", "size": "64x64"},
        )
        assert response.status_code == 200, response.text
        assert decode(httpx.get(response.json()["data"][0]["url"]).content).size == (64, 64)
        assert httpx.get(f"{local_url.rstrip('/')}/v1/nothing").status_code == 404
    finally:
        demo.close()


def test_command_line_options_and_warnings():
    from demo.__main__ import exposure_warnings, parse_args

    args = parse_args(["--auth", "me:pw:with:colons", "--api-candidates", "8", "--device", "cpu"])
    assert (args.host, args.port, args.share, args.auth, args.api_candidates) == (
        "127.0.0.1",
        7860,
        False,
        ("me", "pw:with:colons"),
        8,
    )
    for bad in (["--auth", "nopassword"], ["--max-candidates", "65"], ["--api-candidates", "x"]):
        with pytest.raises(SystemExit):
            parse_args(bad)
    assert exposure_warnings("127.0.0.1", False, None, None) == []
    assert exposure_warnings("::1", False, None, None) == []
    assert len(exposure_warnings("0.0.0.0", False, None, None)) == 1
    assert (
        len(exposure_warnings("127.0.0.1", True, None, None)) == 2
    )  # sharing without --auth, --api-key
    assert exposure_warnings("127.0.0.1", True, ("me", "pw"), "key") == []


def test_the_model_threads_leave_a_core_to_the_server(monkeypatch):
    """`--threads`: $OMP_NUM_THREADS if set, else every core but one (at least one), which the server's own work
    needs; a bad value is refused."""
    from demo.__main__ import parse_args

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert parse_args([]).threads == max(1, len(os.sched_getaffinity(0)) - 1)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert parse_args([]).threads == 3
    assert parse_args(["--threads", "2"]).threads == 2
    for bad in ("0", "two", "-1"):
        with pytest.raises(SystemExit):
            parse_args(["--threads", bad])


def test_the_demo_command_serves_with_the_threads_asked_for(demo_checkpoint: Path):
    """`python -m demo` itself: it says where the model runs and on how many threads, then serves the app and
    the API."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [sys.executable, "-m", "demo", "--port", str(port), "--threads", "1"]
    server = subprocess.Popen(
        [*command, "--checkpoint", str(demo_checkpoint), "--device", "cpu"],
        env={**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        said = [server.stdout.readline() for _ in range(3)]
        assert said[0] == f"Model: {demo_checkpoint} on cpu, 1 CPU thread(s)\n"
        assert said[1] == f"App: http://127.0.0.1:{port}/\n"
        deadline = time.monotonic() + 60
        while True:
            try:
                page = httpx.get(f"http://127.0.0.1:{port}/")
                break
            except httpx.ConnectError:
                assert time.monotonic() < deadline and server.poll() is None
                time.sleep(0.2)
        assert page.status_code == 200 and "Laptop DALL" in page.text
        models = httpx.get(f"http://127.0.0.1:{port}/v1/models")
        assert models.status_code == 200, models.text
    finally:
        server.kill()
        server.wait()


def test_the_key_is_checked_before_the_body_is_read(demo_server: LiveServer):
    """Without the key, a body is not read at all: an oversized or unparseable one is answered 401, not 413/400."""
    url = f"{demo_server.url}/v1/images/generations"
    huge = httpx.post(
        url,
        content=b"{" + b" " * (2 * 2**20) + b"}",
        headers={"Content-Type": "application/json"},
        timeout=120,
    )
    assert_error(huge, 401, None, "didn't provide an api key")
    assert_error(
        httpx.post(url, content=b"{not json", headers={"Content-Type": "application/json"}),
        401,
        None,
        "didn't provide an api key",
    )
    with_key = httpx.post(
        url,
        content=b"{not json",
        timeout=120,
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {DEMO_API_KEY}"},
    )
    assert with_key.status_code == 400
