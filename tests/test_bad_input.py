"""Bad input at every entry point: the `Dalle` facade, `dalle generate`, the Gradio events (through
`gradio_client` and Gradio's own HTTP API) and the OpenAI routes (on the real server on loopback).

Each refuses bad input with a message that says what is wrong, or serves input that is odd but usable
(control characters, emoji, images in any mode), and the server still answers afterwards. Cases already
covered by test_facade.py, test_demo_api.py and test_demo_ui.py are not repeated here.
"""

from __future__ import annotations

import io
import json
import struct
import zlib
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from conftest import DEMO_API_KEY, LiveServer
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from dalle_core import Settings
from dalle_core.cli import main as dalle

SCENE = Path(__file__).resolve().parent.parent / "assets" / "examples" / "scene-38.png"  # 256 px
SETTINGS = (2, 1, 1.0, 64, 1.0, 3.0, 7, False)  # the app's sampling controls, as in test_demo_ui.py
pytestmark = pytest.mark.filterwarnings(
    "ignore:.*(no_silent_downcasting|copy keyword)"
)  # Gradio's use of pandas


def encode(image: Image.Image, fmt: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def bomb_png(side: int = 20000) -> bytes:
    """A valid 1-bit PNG of side x side pixels, all black: about 50 kB on disk, 1.6 GB as RGBA in memory."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    packer = zlib.compressobj(9)
    row = bytes(1 + (side + 7) // 8)  # filter byte 0, then the row's bits
    pixels = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 3, 0, 0, 0)  # 1 bit per pixel, palette colour
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"PLTE", bytes(6))
        + chunk(b"IDAT", pixels)
        + chunk(b"IEND", b"")
    )


def animated_gif() -> bytes:
    frames = [Image.new("RGB", (64, 64), color) for color in ("red", "blue", "green")]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


SCENE_64 = Image.open(SCENE).convert("RGB").resize((64, 64), Image.Resampling.NEAREST)
PNG = encode(SCENE_64)
UNREADABLE = {  # name: (bytes, what the app and the API say)
    "not an image": (b"this is not an image", "not an image"),
    "truncated PNG": (PNG[: len(PNG) // 2], "not an image"),
    "20000x20000 PNG": (bomb_png(), "too large"),
}
READABLE = {  # images in every mode: converted to RGB at the model's size
    "animated GIF": animated_gif(),
    "grayscale": encode(SCENE_64.convert("L")),
    "CMYK JPEG": encode(SCENE_64.convert("CMYK"), "JPEG"),
    "16-bit grayscale": encode(
        Image.fromarray(np.asarray(SCENE_64.convert("L")).astype(np.uint16) * 257)
    ),
    "RGBA": encode(SCENE_64.convert("RGBA")),
}
ODD_PROMPTS = {
    "control characters": "a red \x00\x07\x1b circle",
    "emoji": "a red circle 🐱🎨",
    "full-width and invisible": "ａ ｒｅｄ circle\u200b\u202e",
    "10,000 characters": "x" * 10_000,
}


def test_the_bomb_is_small_on_disk():
    data = UNREADABLE["20000x20000 PNG"][0]
    assert len(data) < 100_000 and struct.unpack(">II", data[16:24]) == (
        20000,
        20000,
    )  # IHDR's width, height
    with pytest.raises(Image.DecompressionBombError):
        Image.open(io.BytesIO(data))


# ------------------------------------------------------------------ the facade


@pytest.mark.parametrize(
    "prompt, words",
    [
        ("a red \ud800 circle", "not valid Unicode"),
        (b"a red circle", "must be text"),
        (None, "must be text"),
    ],
)
def test_facade_refuses_prompts_that_are_not_text(demo_model, prompt, words: str):
    with pytest.raises(ValueError, match=words):
        demo_model.generate(prompt, n=1, candidates=1)


@pytest.mark.parametrize(
    "kw, words",
    [
        ({"temperature": 1e-308}, "temperature must be between 0.01 and 100"),
        ({"temperature": 1e6}, "temperature"),
        ({"guidance": 1e308}, "guidance must be between 1 and 100"),
        ({"top_p": 1e-300}, "top_p must be between"),
        ({"top_k": 1.5}, "top_k"),
        ({"top_k": -1}, "top_k"),
        ({"top_p": float("nan")}, "top_p"),
        ({"guidance": float("-inf")}, "guidance"),
        ({"candidates": 10**6}, "candidates"),
    ],
)
def test_facade_refuses_settings_that_would_break_sampling(kw: dict, words: str):
    """Extreme values once overflowed float32 inside the sampler (RuntimeError): now a ValueError up front."""
    with pytest.raises(ValueError, match=words):
        Settings(**kw)


def test_facade_extremes_that_are_allowed_still_sample(demo_model):
    for kw in (
        {"temperature": 0.01, "guidance": 100.0},
        {"temperature": 100.0, "top_p": 1e-6, "top_k": 1},
        {"n": np.int64(1), "candidates": np.int64(2), "seed": np.uint64(2**63 - 1)},
    ):
        assert len(demo_model.generate("a red circle", **{"n": 1, "candidates": 2, **kw})) == 1


@pytest.mark.parametrize("name", READABLE)
def test_facade_takes_images_in_any_mode(demo_model, name: str):
    pixels = demo_model.prepare_image(Image.open(io.BytesIO(READABLE[name])))
    assert pixels.shape == (64, 64, 3) and pixels.dtype == np.uint8


def test_facade_refuses_unreadable_images_and_masks(demo_model):
    with pytest.raises(ValueError, match="could not be read"):
        demo_model.prepare_image(Image.open(io.BytesIO(UNREADABLE["truncated PNG"][0])))
    with pytest.raises(ValueError, match="hold numbers"):
        demo_model.prepare_image(np.array([[None, "a"]], dtype=object))
    with pytest.raises(ValueError, match="hold numbers"):
        demo_model.snap_mask(np.array([["x", "y"]]))
    with pytest.raises(ValueError, match="hold numbers"):
        demo_model.complete(SCENE_64, "a red circle", mask=np.array([["x"]]), n=1, candidates=1)


# ------------------------------------------------------------------ the command line


@pytest.mark.parametrize(
    "args, words",
    [
        (["--n", "0"], "n must be between 1"),
        (["--n", "-1"], "n must be between 1"),
        (["--candidates", "65"], "candidates must be between 1 and 64"),
        (["--temperature", "0"], "temperature"),
        (["--temperature", "nan"], "temperature must be a finite number"),
        (["--temperature", "inf"], "temperature"),
        (["--temperature", "1e-308"], "between 0.01 and 100"),
        (["--top-k", "-1"], "top_k"),
        (["--top-p", "1.5"], "top_p"),
        (["--top-p", "0"], "top_p"),
        (["--guidance", "0.5"], "guidance"),
        (["--seed", "-1"], "seed"),
        (["--seed", str(2**70)], "seed must be between"),
        (["--checkpoint", "/no/such/dir"], "dalle train all"),
    ],
)
def test_cli_refuses_bad_settings_before_loading_the_model(
    args: list[str], words: str, tmp_path: Path
):
    with pytest.raises(SystemExit) as e:
        dalle(["generate", "a red circle", "--out", str(tmp_path / "out.png"), *args])
    assert str(e.value.code).startswith("error: ") and words in str(e.value.code)
    assert not (tmp_path / "out.png").exists()


@pytest.mark.parametrize(
    "prompt, words", [("  \t ", "prompt is empty"), ("a red \udcff circle", "not valid Unicode")]
)
def test_cli_refuses_empty_prompts_and_undecodable_bytes(
    prompt: str, words: str, tmp_path: Path, demo_checkpoint
):
    """'\\udcff' is what Python makes of a command-line byte that is not UTF-8 (here, 0xff)."""
    with pytest.raises(SystemExit) as e:
        dalle(
            [
                "generate",
                prompt,
                "--checkpoint",
                str(demo_checkpoint),
                "--device",
                "cpu",
                "--out",
                str(tmp_path / "out.png"),
            ]
        )
    assert words in str(e.value.code)


@pytest.mark.parametrize(
    "args, words",
    [
        (["--n", "abc"], "invalid int value: 'abc'"),
        (["--temperature", "warm"], "invalid float value"),
        (["--threads", "-1"], "--threads: must be 0 or more"),
    ],
)
def test_cli_refuses_values_that_are_not_numbers(args: list[str], words: str, capsys):
    with pytest.raises(SystemExit) as e:
        dalle(["generate", "a red circle", *args])
    assert e.value.code == 2 and words in capsys.readouterr().err


@pytest.mark.parametrize(
    "args, words",
    [
        (["--threads", "-2"], "--threads: must be 0 or more, got -2"),
        (["--workers", "-1"], "--workers: must be 0 or more"),
        (["--accum", "0"], "--accum: must be 1 or more, got 0"),
        (["--vae-steps", "0"], "--vae-steps: must be 1 or more"),
        (["--clip-steps", "-5"], "--clip-steps: must be 1 or more"),
        (["--lr", "0"], "--lr: must be a positive number"),
    ],
)
def test_train_refuses_counts_out_of_range(args: list[str], words: str, tmp_path: Path, capsys):
    """Before anything trains or a folder is written: a usage error naming the option."""
    with pytest.raises(SystemExit) as e:
        dalle(["train", "vae", "--tiny", "--out", str(tmp_path / "run"), *args])
    assert (
        e.value.code == 2 and words in capsys.readouterr().err and not (tmp_path / "run").exists()
    )


@pytest.mark.parametrize(
    "args, words",
    [
        (["world", "--n", "0"], "--n: must be 1 or more, got 0"),
        (["world", "--size", "2"], "--size: must be 4 or more, got 2"),
        (["world", "--cols", "0"], "--cols: must be 1 or more"),
        (["world", "--scale", "-1"], "--scale: must be 1 or more"),
        (["eval", "--per-category", "0"], "--per-category: must be 1 or more"),
        (["eval", "--candidates", "0"], "--candidates: must be 1 or more"),
    ],
)
def test_world_and_eval_refuse_counts_out_of_range(
    args: list[str], words: str, tmp_path: Path, capsys
):
    """A usage error naming the option, before any file is written (a world side of 2 used to hang)."""
    with pytest.raises(SystemExit) as e:
        dalle([*args, "--out", str(tmp_path / "out")])
    assert (
        e.value.code == 2 and words in capsys.readouterr().err and not (tmp_path / "out").exists()
    )


def test_cli_threads_sets_torch_threads(demo_checkpoint, tmp_path: Path):
    before = torch.get_num_threads()
    try:
        dalle(
            [
                "generate",
                "a red circle",
                "--checkpoint",
                str(demo_checkpoint),
                "--device",
                "cpu",
                "--n",
                "1",
                "--candidates",
                "1",
                "--threads",
                "2",
                "--out",
                str(tmp_path / "out.png"),
            ]
        )
        assert torch.get_num_threads() == 2 and (tmp_path / "out.png").exists()
    finally:
        torch.set_num_threads(before)


# ------------------------------------------------------------------ the Gradio events


@pytest.fixture(scope="module")
def client(demo_server: LiveServer) -> Client:
    return Client(demo_server.url, verbose=False, analytics_enabled=False)


@pytest.mark.parametrize("name", ODD_PROMPTS)
def test_app_serves_odd_prompts_and_says_what_it_ignored(client: Client, name: str):
    gallery, _, _ = client.predict(ODD_PROMPTS[name], *SETTINGS, api_name="/generate")
    assert len(gallery) == 1
    note = client.predict(ODD_PROMPTS[name], api_name="/check_prompt")  # the note under the prompt
    assert "never saw in training" in note or "longer than the model reads" in note


@pytest.mark.parametrize(
    "index, value, words",
    [
        (0, 0, "less than minimum value 1"),
        (0, 65, "greater than maximum value 16"),
        (1, 0, "less than minimum"),
        (2, -1.0, "less than minimum value 0.1"),
        (3, -1, "less than minimum value 0"),
        (3, 513, "greater than maximum"),
        (3, 1.5, "Top-k must be a whole number"),
        (4, 0.0, "less than minimum value 0.05"),
        (4, 1.5, "greater than maximum value 1"),
        (5, 0.5, "less than minimum value 1"),
        (6, 2**70, "Seed must be between 0 and"),
        (6, None, "Seed must be a whole number"),
        (0, "abc", "Could not preprocess input component at index 1 (a `slider` component)"),
    ],
)
def test_app_refuses_bad_settings(client: Client, index: int, value, words: str):
    settings = list(SETTINGS)
    settings[index] = value
    with pytest.raises(AppError, match=words.replace("(", r"\(").replace(")", r"\)")):
        client.predict("a red circle", *settings, api_name="/generate")


def gradio_http_error(server: LiveServer, data: list[str]) -> str:
    """Call /generate through Gradio's HTTP API with raw JSON values (NaN and Infinity, which JSON clients cannot
    send); returns the error message of its event stream."""
    body = '{"data": [' + ", ".join(data) + "]}"
    started = httpx.post(
        f"{server.url}/gradio_api/call/generate",
        content=body,
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    assert started.status_code == 200, started.text
    stream = httpx.get(
        f"{server.url}/gradio_api/call/generate/{started.json()['event_id']}", timeout=60
    ).text
    event, _, data_line = stream.strip().partition("\n")
    assert event == "event: error", stream
    return json.loads(data_line.removeprefix("data: "))["error"]


@pytest.mark.parametrize(
    "index, value, words",
    [
        (2, "NaN", "Temperature must be a finite number, got nan"),
        (2, "Infinity", "greater than maximum value 2"),
        (4, "NaN", "Top_p must be a finite number, got nan"),
        (3, "NaN", "Top-k must be a whole number, got nan"),
        (0, "NaN", "Candidates must be a whole number, got nan"),
        (6, "NaN", "(a `number` component)"),
    ],
)
def test_app_refuses_nan_and_infinity_over_http(
    demo_server: LiveServer, index: int, value: str, words: str
):
    data = [json.dumps("a red circle"), *map(json.dumps, SETTINGS)]
    data[1 + index] = value
    assert words in gradio_http_error(demo_server, data)


def editor_value(tmp_path: Path, name: str, data: bytes) -> dict:
    path = tmp_path / name.replace(" ", "-")
    path.write_bytes(data)
    return {"background": handle_file(str(path)), "layers": [], "composite": None}


@pytest.mark.parametrize("name", UNREADABLE)
def test_app_refuses_unreadable_uploads(client: Client, tmp_path: Path, name: str):
    data, words = UNREADABLE[name]
    editor = editor_value(tmp_path, name, data)
    message = {
        "not an image": "The upload is not an image this app can read",
        "too large": "The image is too large: at most 16777216 pixels",
    }[words]
    with pytest.raises(AppError, match=message):
        client.predict(editor, "sliders", 4, 4, api_name="/preview_region")
    with pytest.raises(AppError, match=message):
        client.predict(editor, "a red circle", "sliders", 4, 4, *SETTINGS, api_name="/complete")


@pytest.mark.parametrize("name", READABLE)
def test_app_completes_images_in_any_mode(client: Client, tmp_path: Path, name: str):
    editor = editor_value(tmp_path, name, READABLE[name])
    gallery, status, _ = client.predict(
        editor, "a red circle", "sliders", 4, 4, *SETTINGS, api_name="/complete"
    )
    assert len(gallery) == 1 and "best 1 of 2" in status


def test_app_uploads_over_10_mb_are_refused(demo_server: LiveServer):
    response = httpx.post(
        f"{demo_server.url}/gradio_api/upload",
        timeout=60,
        files=[("files", ("big.png", bytes(11 * 2**20), "image/png"))],
    )
    assert response.status_code == 413 and "maximum allowed size" in response.text


# ------------------------------------------------------------------ the OpenAI routes


def post(
    server: LiveServer, path: str, headers: dict[str, str] | None = None, **kwargs
) -> httpx.Response:
    return httpx.post(
        f"{server.url}{path}",
        headers={"Authorization": f"Bearer {DEMO_API_KEY}", **(headers or {})},
        timeout=120,
        **kwargs,
    )


def assert_api_error(response: httpx.Response, param: str | None, words: str) -> None:
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (
        error["type"] == "invalid_request_error"
        and error["param"] == param
        and words in error["message"]
    )


@pytest.mark.parametrize(
    "body, param, words",
    [
        (
            json.dumps({"prompt": ODD_PROMPTS["10,000 characters"]}),
            "prompt",
            "at most 1000 characters, got 10000",
        ),
        (
            '{"prompt": "a red \\ud800 circle"}',
            "prompt",
            "not valid Unicode",
        ),  # a lone surrogate, as JSON may escape it
        ('{"prompt": "a red circle", "n": -1}', "n", "between 1 and 10, got -1"),
        ('{"prompt": "a red circle", "n": true}', "n", "got True"),
        ('{"prompt": "a red circle", "n": NaN}', "n", "got nan"),
        ('{"prompt": "a red circle", "n": 1e400}', "n", "got inf"),
        ('{"prompt": "a red circle", "n": "1e3"}', "n", "got '1e3'"),
        (
            '{"prompt": ["a red circle"]}',
            "prompt",
            "prompt must be a string of at most 1000 characters, got a list",
        ),
        ('{"prompt": "\\t\\n "}', "prompt", "missing or empty"),
    ],
    ids=lambda v: v[:40] if isinstance(v, str) else None,
)
def test_api_refuses_bad_generation_fields(
    demo_server: LiveServer, body: str, param: str | None, words: str
):
    response = post(
        demo_server,
        "/v1/images/generations",
        content=body.encode(),
        headers={"Content-Type": "application/json"},
    )
    assert_api_error(response, param, words)


@pytest.mark.parametrize(
    "field, value, words",
    [
        ("prompt", 42, "prompt must be a string of at most 1000 characters, got 42."),
        (
            "prompt",
            {"text": "a red circle"},
            "prompt must be a string of at most 1000 characters, got an object: {'text'",
        ),
        ("prompt", True, "prompt must be a string of at most 1000 characters, got True."),
        ("n", [2], "n must be an integer between 1 and 10, got a list: [2]."),
        ("n", "two", "n must be an integer between 1 and 10, got 'two'."),
        ("size", 256, "size must be one of 64x64, 96x96, 256x256, 512x512, 1024x1024, got 256."),
        (
            "size",
            {"width": 64},
            "size must be one of 64x64, 96x96, 256x256, 512x512, 1024x1024, got an object",
        ),
        (
            "response_format",
            ["url"],
            "response_format must be one of url, b64_json, got a list: ['url'].",
        ),
        ("response_format", False, "response_format must be one of url, b64_json, got False."),
    ],
)
def test_api_type_errors_name_the_field_and_what_it_takes(
    demo_server: LiveServer, field: str, value, words: str
):
    response = post(
        demo_server, "/v1/images/generations", json={"prompt": "a red circle", field: value}
    )
    assert_api_error(response, field, words)


@pytest.mark.parametrize(
    "parts, param, words",
    [
        (
            [("prompt", ("prompt.txt", b"a red circle", "text/plain"))],
            "prompt",
            "prompt must be a string of at most 1000 characters, got a file.",
        ),
        ([("n", (None, "two"))], "n", "n must be an integer between 1 and 10, got 'two'."),
        (
            [("n", ("n.txt", b"2", "text/plain"))],
            "n",
            "n must be an integer between 1 and 10, got a file.",
        ),
        ([("n", (None, "11"))], "n", "n must be an integer between 1 and 10, got 11."),
        (
            [("size", (None, "64"))],
            "size",
            "size must be one of 64x64, 96x96, 256x256, 512x512, 1024x1024, got '64'.",
        ),
        (
            [("response_format", (None, "png"))],
            "response_format",
            "response_format must be one of url, b64_json",
        ),
        (
            [("mask", (None, "the lower right corner"))],
            "mask",
            "mask must be a file (a multipart upload), got 'the lower right corner'.",
        ),
    ],
)
def test_api_edit_type_errors_name_the_field_and_what_it_takes(
    demo_server: LiveServer, parts: list, param: str, words: str
):
    """The same for the multipart fields of an edit, as the openai clients send them (text parts, files)."""
    fields = [("prompt", (None, "a red circle"))] if param != "prompt" else []
    files = [("image", ("image.png", PNG, "image/png")), *fields, *parts]
    assert_api_error(post(demo_server, "/v1/images/edits", files=files), param, words)


def test_api_edit_image_sent_as_text_is_named(demo_server: LiveServer):
    response = post(
        demo_server,
        "/v1/images/edits",
        files=[("image", (None, "scene.png")), ("prompt", (None, "a red circle"))],
    )
    assert_api_error(
        response, "image", "image must be a file (a multipart upload), got 'scene.png'."
    )


@pytest.mark.parametrize("name", list(ODD_PROMPTS)[:3])
def test_api_serves_odd_prompts(demo_server: LiveServer, name: str):
    response = post(
        demo_server, "/v1/images/generations", json={"prompt": ODD_PROMPTS[name], "size": "64x64"}
    )
    assert response.status_code == 200 and len(response.json()["data"]) == 1


def corner_mask(size: int = 64) -> bytes:
    """An RGBA mask, transparent (to redraw) from the middle to the bottom-right corner."""
    alpha = np.full((size, size), 255, np.uint8)
    alpha[size // 2 :, size // 2 :] = 0
    return encode(Image.fromarray(np.dstack([np.zeros((size, size, 3), np.uint8), alpha]), "RGBA"))


def edit(server: LiveServer, image: bytes, mask: bytes | None) -> httpx.Response:
    files = [("image", ("image.png", image, "image/png"))]
    if mask is not None:
        files.append(("mask", ("mask.png", mask, "image/png")))
    return post(
        server,
        "/v1/images/edits",
        files=files,
        data={"prompt": "a red circle", "size": "64x64", "response_format": "b64_json"},
    )


@pytest.mark.parametrize("name", UNREADABLE)
@pytest.mark.parametrize("param", ["image", "mask"])
def test_api_refuses_unreadable_uploads(demo_server: LiveServer, name: str, param: str):
    data, words = UNREADABLE[name]
    response = (
        edit(demo_server, data, corner_mask()) if param == "image" else edit(demo_server, PNG, data)
    )
    assert_api_error(
        response,
        param,
        {
            "not an image": f"The {param} is not an image this server can read",
            "too large": f"The {param} is too large: at most 16777216 pixels",
        }[words],
    )


@pytest.mark.parametrize("name", READABLE)
def test_api_edits_images_in_any_mode(demo_server: LiveServer, name: str):
    response = edit(demo_server, READABLE[name], corner_mask())
    assert response.status_code == 200, response.text
    assert len(response.json()["data"]) == 1


def test_api_needs_an_alpha_channel_in_the_mask(demo_server: LiveServer):
    assert_api_error(
        edit(demo_server, PNG, READABLE["16-bit grayscale"]), "mask", "no alpha channel"
    )
    assert_api_error(
        edit(demo_server, PNG, READABLE["RGBA"]), "mask", "no fully transparent pixels"
    )


# ------------------------------------------------------------------ afterwards


def test_the_server_still_answers(demo_server: LiveServer, client: Client):
    assert post(
        demo_server, "/v1/images/generations", json={"prompt": "a red circle", "size": "64x64"}
    ).is_success
    assert httpx.get(
        f"{demo_server.url}/v1/models", headers={"Authorization": f"Bearer {DEMO_API_KEY}"}
    ).is_success
    gallery, _, _ = client.predict("a red circle", *SETTINGS, api_name="/generate")
    assert len(gallery) == 1
