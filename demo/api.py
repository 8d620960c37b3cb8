"""An OpenAI-compatible Images API over `Dalle`, to add to a FastAPI app beside the Gradio UI.

Routes (answering JSON in OpenAI's shapes, but for the image files):

- ``POST /v1/images/generations``: JSON ``{prompt, n, size, response_format, ...}``.
- ``POST /v1/images/edits``: multipart ``image`` (or ``image[]``), optional ``mask``, ``prompt``, ...
  The mask's fully transparent pixels (alpha 0) mark what to redraw; without a mask the image's own
  transparency does. This model can only redraw a rectangle that reaches the bottom-right corner,
  so the marked area is grown to the smallest such rectangle of whole token cells.
- ``GET /v1/models``: the one model served.
- ``GET /v1/files/<id>.png``: images returned as ``url``, kept in memory for a limited time. The
  random id is the only key to them (like OpenAI's signed URLs), so they need no API key.
- ``GET /v1/openapi.json``: the OpenAPI document of these routes (`demo.openapi`), no API key needed.

Each returned image is the best of ``api_candidates`` samples (at least ``n``) by the scorer.
Errors are ``{"error": {"message", "type", "param", "code"}}`` with a 4xx/5xx status, which
both the current and the 0.28 `openai` clients turn into their exceptions.
"""
from __future__ import annotations

import base64
import functools
import io
import json
import logging
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import numpy as np
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from PIL import Image
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from dalle_core import DEFAULTS, MAX_CANDIDATES, Dalle, Result

from .media import MAX_IMAGE_PIXELS, center_square, enlarge, native_pixels, png_bytes

log = logging.getLogger(__name__)
T = TypeVar("T")
Handler = Callable[[Request], Awaitable[Response]]

MODEL_ID = "laptop-dalle"
SIZES = {"64x64": 64, "256x256": 256, "512x512": 512, "1024x1024": 1024}  # 64 is native; the rest are enlarged
DEFAULT_SIZE = "1024x1024"  # as OpenAI's
MAX_N = 10
MAX_PROMPT_CHARS = 1000
MAX_IMAGE_BYTES = 4 * 2**20  # per uploaded file, as OpenAI's edits
MAX_JSON_BYTES = 2**20
MAX_FORM_BYTES = 2 * MAX_IMAGE_BYTES + 2**16  # an image, a mask and the text fields
RESPONSE_FORMATS = ("url", "b64_json")


class APIError(Exception):
    """An error answered in OpenAI's format: `{"error": {"message", "type", "param", "code"}}`."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 type: str = "invalid_request_error", headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.type = status, message, param, code, type
        self.headers = headers

    def response(self) -> JSONResponse:
        """The JSON response to send."""
        body = {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}
        return JSONResponse(body, status_code=self.status, headers=self.headers)


class Busy(Exception):
    """Raised by `ModelGate.run` when too many calls already wait for the model."""


class ModelGate:
    """Runs model calls one at a time; when `max_waiting` calls already wait, refuses with `Busy`."""

    def __init__(self, max_waiting: int = 4):
        self._lock = threading.Lock()
        self._places = threading.BoundedSemaphore(max_waiting + 1)  # the running call and the waiting ones

    def run(self, fn: Callable[[], T]) -> T:
        """Call `fn` once the model is free (blocks: call it from a worker thread)."""
        if not self._places.acquire(blocking=False):
            raise Busy
        try:
            with self._lock:
                return fn()
        finally:
            self._places.release()


class FileStore:
    """PNG files served for `url` results: in memory, at most `max_files` / `max_bytes`, each for `max_age` seconds.

    Only touched from async route handlers (the event loop's thread), so it needs no lock.
    """

    def __init__(self, max_files: int = 512, max_bytes: int = 128 * 2**20, max_age: float = 3600.0):
        self.max_files, self.max_bytes, self.max_age = max_files, max_bytes, max_age
        self._files: OrderedDict[str, tuple[float, bytes]] = OrderedDict()  # oldest first
        self._bytes = 0

    def put(self, data: bytes) -> str:
        """Store a file; returns its new random id. The oldest files make room."""
        file_id = secrets.token_urlsafe(18)
        self._files[file_id] = (time.monotonic(), data)
        self._bytes += len(data)
        self._evict()
        return file_id

    def get(self, file_id: str) -> bytes | None:
        """A stored file, or None if unknown or expired."""
        self._evict()
        entry = self._files.get(file_id)
        return entry[1] if entry else None

    def _evict(self) -> None:
        too_old = time.monotonic() - self.max_age
        while self._files:
            created, data = next(iter(self._files.values()))
            if created >= too_old and len(self._files) <= self.max_files and self._bytes <= self.max_bytes:
                break
            self._files.popitem(last=False)
            self._bytes -= len(data)


def add_api_routes(app: FastAPI, model: Dalle, api_key: str | None = None, api_candidates: int = DEFAULTS.candidates,
                   max_waiting: int = 4) -> None:
    """Add the `/v1` routes to `app` (before mounting Gradio at "/"); `app.state.model_gate` is their gate."""
    if not 1 <= api_candidates <= MAX_CANDIDATES:
        raise ValueError(f"api_candidates must be between 1 and {MAX_CANDIDATES}, got {api_candidates}")
    api = ImagesAPI(model, api_key, api_candidates, ModelGate(max_waiting), FileStore())
    app.state.model_gate = api.gate
    routes: list[tuple[str, Handler, str]] = [
        ("/v1/images/generations", api.generations, "POST"),
        ("/v1/images/edits", api.edits, "POST"),
        ("/v1/models", api.models, "GET"),
        ("/v1/files/{file_id}.png", api.file, "GET"),
        ("/v1/openapi.json", api.openapi, "GET"),
        ("/v1/{rest:path}", api.not_found, "GET POST PUT PATCH DELETE"),  # last: anything else under /v1
    ]
    for path, handler, methods in routes:
        app.add_api_route(path, _answering_errors(handler), methods=methods.split(),
                          name=f"openai_{handler.__name__}", include_in_schema=False)


def _answering_errors(handler: Handler) -> Handler:
    """The handler, with `APIError`s and unexpected failures answered in OpenAI's error format."""
    @functools.wraps(handler)
    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request)
        except APIError as e:
            return e.response()
        except Exception:
            log.exception("%s %s failed", request.method, request.url.path)
            return APIError(500, "The server had an error while processing your request.", type="server_error",
                            code="server_error").response()
    return endpoint


class ImagesAPI:
    """The route handlers; each takes the request and returns a response or raises `APIError`."""

    def __init__(self, model: Dalle, api_key: str | None, api_candidates: int, gate: ModelGate, files: FileStore):
        self.model, self.api_key, self.api_candidates = model, api_key, api_candidates
        self.gate, self.files = gate, files

    async def generations(self, request: Request) -> Response:
        """POST /v1/images/generations."""
        self._check_key(request)
        body = await _read_body(request, MAX_JSON_BYTES)
        try:
            fields = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise APIError(400, "We could not parse the JSON body of your request: send a JSON object.") from None
        if not isinstance(fields, dict):
            raise APIError(400, "The request body must be a JSON object.")
        prompt, n, size, response_format = _common_fields(fields)
        results = await self._run(lambda: self.model.generate(prompt, **self._settings(n)))
        return self._answer(request, results, size, response_format)

    async def edits(self, request: Request) -> Response:
        """POST /v1/images/edits (multipart)."""
        self._check_key(request)
        body = await _read_body(request, MAX_FORM_BYTES)
        form = await _parse_form(request, body)
        fields = {key: value for key, value in form.multi_items() if isinstance(value, str)}
        prompt, n, size, response_format = _common_fields(fields)
        images = [v for key in ("image", "image[]") for v in form.getlist(key)]
        if not images:
            raise APIError(400, "Missing the image to edit: send it as the multipart file 'image'.", param="image")
        if len(images) > 1:
            raise APIError(400, f"This model edits one image at a time, got {len(images)}.", param="image")
        image = await _read_image(images[0], "image")
        marked_by = "mask" if "mask" in form else "image"  # without a mask, the image's transparency marks the edit
        mask = image if marked_by == "image" else await _read_image(form["mask"], "mask")
        if mask.size != image.size:
            raise APIError(400, f"The mask ({mask.size[0]}x{mask.size[1]}) must be the same size as the image "
                                f"({image.size[0]}x{image.size[1]}).", param="mask")
        edit = center_square(_alpha(mask, marked_by) == 0)  # the model keeps the central square of an image
        if not edit.any():
            raise APIError(400, f"The {marked_by} has no fully transparent pixels (alpha 0): they mark the area to "
                                "edit.", param=marked_by)
        region = self.model.snap_mask(edit)
        pixels = native_pixels(np.asarray(image.convert("RGBA")), self.model.image_size)
        given = image if pixels is None else pixels  # an enlarged model-size image goes back pixel for pixel
        results = await self._run(lambda: self.model.complete(given, prompt, region=region, **self._settings(n)))
        return self._answer(request, results, size, response_format)

    async def models(self, request: Request) -> Response:
        """GET /v1/models."""
        self._check_key(request)
        return JSONResponse({"object": "list", "data": [
            {"id": MODEL_ID, "object": "model", "created": 0, "owned_by": "laptop-dalle"}]})

    async def file(self, request: Request) -> Response:
        """GET /v1/files/<id>.png: an image returned earlier as `url`."""
        data = self.files.get(request.path_params["file_id"])
        if data is None:
            raise APIError(404, "No such image: images returned as URLs are kept for a limited time only.",
                           code="not_found")
        return Response(data, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})

    async def openapi(self, request: Request) -> Response:
        """GET /v1/openapi.json: the OpenAPI document of these routes (no API key: it holds no secret)."""
        from .openapi import openapi_document  # that module reads this one's limits

        return JSONResponse(openapi_document())

    async def not_found(self, request: Request) -> Response:
        """Anything else under /v1."""
        raise APIError(404, f"Invalid URL ({request.method} {request.url.path})", code="unknown_url")

    # ---------------------------------------------------------------- helpers

    def _check_key(self, request: Request) -> None:
        if self.api_key is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise APIError(401, "You didn't provide an API key. You need to provide your API key in an "
                                "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).")
        if not secrets.compare_digest(token.strip().encode(), self.api_key.encode()):
            raise APIError(401, "Incorrect API key provided.", code="invalid_api_key")

    def _settings(self, n: int) -> dict[str, Any]:
        """Facade settings for n images: the best n of max(api_candidates, n) samples, a fresh random seed."""
        return {"n": n, "candidates": max(self.api_candidates, n), "seed": secrets.randbelow(2**31)}

    async def _run(self, call: Callable[[], list[Result]]) -> list[Result]:
        """Run a model call in a worker thread through the gate; the facade's ValueErrors become 400s."""
        try:
            return await run_in_threadpool(self.gate.run, call)
        except Busy:
            raise APIError(429, "The server is busy with other image requests: retry in a few seconds.",
                           type="requests", code="rate_limit_exceeded", headers={"Retry-After": "5"}) from None
        except ValueError as e:
            raise APIError(400, str(e)) from None

    def _answer(self, request: Request, results: list[Result], size: int, response_format: str) -> Response:
        data = []
        for result in results:
            png = png_bytes(enlarge(result.image, size))
            if response_format == "b64_json":
                data.append({"b64_json": base64.b64encode(png).decode("ascii")})
            else:
                url = request.url_for("openai_file", file_id=self.files.put(png))
                data.append({"url": str(url)})
        return JSONResponse({"created": int(time.time()), "data": data})


def _common_fields(fields: dict[str, Any]) -> tuple[str, int, int, str]:
    """prompt, n, size in pixels and response_format from a request's fields (others are ignored)."""
    prompt = fields.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise APIError(400, "The prompt is missing or empty: describe the image, e.g. 'a red circle above a blue "
                            "square'.", param="prompt")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise APIError(400, f"The prompt is too long: at most {MAX_PROMPT_CHARS} characters, got {len(prompt)}.",
                       param="prompt")
    n = 1 if fields.get("n") is None else fields["n"]
    if isinstance(n, str) and n.strip().isdigit():  # multipart fields are text
        n = int(n)
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_N:
        raise APIError(400, f"n must be an integer between 1 and {MAX_N}, got {n!r}.", param="n")
    size = fields.get("size") or DEFAULT_SIZE
    if not isinstance(size, str) or size not in SIZES:
        raise APIError(400, f"size must be one of {', '.join(SIZES)}, got {size!r} (64x64 is the model's own "
                            "resolution; larger sizes are enlarged with square pixels).", param="size")
    response_format = fields.get("response_format") or "url"
    if response_format not in RESPONSE_FORMATS:
        raise APIError(400, f"response_format must be 'url' or 'b64_json', got {response_format!r}.",
                       param="response_format")
    return prompt, n, SIZES[size], response_format


async def _read_body(request: Request, limit: int) -> bytes:
    """The request body; 413 as soon as it is longer than `limit` bytes."""
    too_large = APIError(413, f"The request is too large: at most {limit // 2**20 or 1} MB.", code="too_large")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise too_large
    return bytes(body)


async def _parse_form(request: Request, body: bytes):
    """The multipart form of a body already read (and size-checked) by `_read_body`."""
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise APIError(400, "Send the edit as multipart/form-data with the image file in the field 'image'.")

    async def receive() -> dict:
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        return await Request(request.scope, receive).form(max_files=4, max_fields=64)
    except Exception as e:  # the multipart parser's errors are of several types
        raise APIError(400, f"Could not read the multipart form: {e}") from None


async def _read_image(upload: Any, param: str) -> Image.Image:
    """An uploaded file as a loaded PIL image, whatever its name and content type says (it is read from its bytes)."""
    if not isinstance(upload, UploadFile):
        raise APIError(400, f"'{param}' must be uploaded as a file (multipart), not as text.", param=param)
    data = await upload.read()
    if len(data) > MAX_IMAGE_BYTES:
        raise APIError(413, f"The {param} is too large: at most {MAX_IMAGE_BYTES // 2**20} MB.", param=param,
                       code="too_large")
    too_large = f"The {param} is too large: at most {MAX_IMAGE_PIXELS} pixels (4096x4096)"
    try:
        image = Image.open(io.BytesIO(data))
        if image.size[0] * image.size[1] > MAX_IMAGE_PIXELS:
            raise APIError(400, f"{too_large}, got {image.size[0]}x{image.size[1]}.", param=param)
        image.load()
    except APIError:
        raise
    except Image.DecompressionBombError:  # Pillow's own limit (`refuse_huge_images`), checked as it opens the file
        raise APIError(400, f"{too_large}.", param=param) from None
    except (OSError, SyntaxError, ValueError):
        raise APIError(400, f"The {param} is not an image this server can read: send a PNG.", param=param,
                       code="invalid_image_format") from None
    return image


def _alpha(image: Image.Image, param: str) -> np.ndarray:
    """The alpha channel (H, W) of the image or mask named `param`; 400 if it has none."""
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        return np.asarray(image.convert("RGBA"))[..., 3]
    if param == "mask":
        raise APIError(400, "The mask has no alpha channel: use a PNG whose fully transparent pixels (alpha 0) "
                            "mark the area to edit.", param=param)
    raise APIError(400, "The image has no transparent pixels to mark what to edit: send a mask (a PNG whose "
                        "fully transparent pixels mark it), or make that area of the image transparent.", param=param)
