"""Property-based tests (hypothesis) of the code that takes user input apart: the text tokenizer, mask
snapping, and the validation of the OpenAI routes' fields and uploads.

They run the real components: the shipped tokenizer, `Dalle.snap_mask` of the session's model, and
`demo.api`'s request model, error messages and upload reader (the same the routes use); `max_examples` keeps
the file to a few seconds.
"""

from __future__ import annotations

import asyncio
import io
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from pydantic import ValidationError
from starlette.datastructures import UploadFile

from dalle_core import world
from dalle_core.text import TextTokenizer
from demo.api import (
    MAX_N,
    MAX_PROMPT_CHARS,
    RESPONSE_FORMATS,
    SIZES,
    APIError,
    ImageRequest,
    _read_image,
    validation_error,
)

FAST = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
SCENE = Path(__file__).resolve().parent.parent / "assets" / "examples" / "scene-38.png"

# text with control characters, emoji, combining marks, other scripts and white space of every kind
UNICODE = st.text(
    st.one_of(
        st.characters(codec="utf-8"),
        st.characters(min_codepoint=0, max_codepoint=0x1F),
        st.characters(min_codepoint=0x1F300, max_codepoint=0x1FAFF),
        st.sampled_from("\u200b\u200d\ufeff\u2028\u00a0\u0301 \t\n"),
    ),
    max_size=200,
)
CAPTIONS = st.integers(0, 2**32).map(lambda seed: world.sample_scene(random.Random(seed))[1])
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)


@pytest.fixture(scope="module")
def tok(demo_checkpoint: Path) -> TextTokenizer:
    return TextTokenizer.load(demo_checkpoint)


# ------------------------------------------------------------------ the tokenizer


@FAST
@given(caption=CAPTIONS)
def test_world_captions_round_trip(tok: TextTokenizer, caption: str):
    ids, truncated = tok.encode(caption)
    assert not truncated and tok.decode(ids) == caption and tok.unknown_words(caption) == []


@FAST
@given(text=UNICODE)
def test_any_text_encodes_to_the_fixed_layout(tok: TextTokenizer, text: str):
    """[BOS] tokens [EOS] [PAD]...: always `length` ids in the vocabulary, whatever the text."""
    ids, truncated = tok.encode(text)
    ids = ids.tolist()
    assert len(ids) == tok.length and all(0 <= i < tok.vocab_size for i in ids)
    assert ids[0] == tok.bos_id and ids.count(tok.eos_id) == 1
    end = ids.index(tok.eos_id)
    assert set(ids[end + 1 :]) <= {tok.pad_id} and tok.pad_id not in ids[:end]
    assert isinstance(tok.decode(torch.tensor(ids)), str)
    assert (end == tok.length - 1) if truncated else (end < tok.length)


@FAST
@given(captions=st.lists(CAPTIONS, min_size=1, max_size=6))
def test_truncation_is_reported_exactly(tok: TextTokenizer, captions: list[str]):
    """Truncated iff the text has more tokens than fit; what fits is the text's first tokens."""
    text = " and ".join(captions)
    pieces = tok.tokenizer.encode(text).ids
    ids, truncated = tok.encode(text)
    room = tok.length - 2
    assert truncated == (len(pieces) > room)
    assert ids[1 : 1 + min(room, len(pieces))].tolist() == pieces[:room]
    if not truncated:
        assert tok.decode(ids) == text


# ------------------------------------------------------------------ mask snapping

MASKS = st.tuples(st.integers(1, 80), st.integers(1, 80)).flatmap(
    lambda hw: st.lists(
        st.tuples(st.integers(0, hw[0] - 1), st.integers(0, hw[1] - 1)), min_size=1, max_size=20
    ).map(lambda cells: (hw, cells))
)


@FAST
@given(mask=MASKS, kind=st.sampled_from(["bool", "uint8", "float", "rgba", "rgb"]))
def test_snapped_rectangle_reaches_the_corner_and_covers_the_paint(demo_model, mask, kind: str):
    (h, w), cells = mask
    painted = np.zeros((h, w), bool)
    painted[tuple(np.array(cells).T)] = True
    given_mask = {
        "bool": painted,
        "uint8": painted.astype(np.uint8) * 255,
        "float": painted * 0.5,
        "rgba": np.dstack([np.zeros((h, w, 3)), painted * 255]).astype(np.uint8),
        "rgb": np.dstack([painted] * 3).astype(np.uint8),
    }[kind]
    r, c = demo_model.snap_mask(given_mask)
    g = demo_model.grid
    assert 0 <= r < g and 0 <= c < g
    # every painted pixel's token cell is in the rectangle of cells [r, g) x [c, g), which ends at the corner
    ys, xs = np.nonzero(painted)
    cell_rows, cell_cols = ys * g // h, xs * g // w
    assert (cell_rows >= r).all() and (cell_cols >= c).all()
    # and it is the smallest such rectangle: its top row and left column hold paint
    assert cell_rows.min() == r and cell_cols.min() == c


@FAST
@given(
    h=st.integers(1, 80),
    w=st.integers(1, 80),
    kind=st.sampled_from(["bool", "uint8", "float", "rgba"]),
)
def test_an_empty_mask_is_refused_clearly(demo_model, h: int, w: int, kind: str):
    shape = (h, w, 4) if kind == "rgba" else (h, w)
    with pytest.raises(ValueError, match="marks nothing to edit"):
        demo_model.snap_mask(np.zeros(shape, {"bool": bool, "float": float}.get(kind, np.uint8)))


# ------------------------------------------------------------------ the OpenAI routes' validation

FIELDS = st.fixed_dictionaries(
    {},
    optional={
        "prompt": JSON
        | UNICODE
        | st.text(min_size=990, max_size=1010)
        | st.text(
            st.characters() | st.characters(categories=["Cs"]), min_size=1
        ),  # lone surrogates too
        "n": JSON | st.integers(-2, 12) | st.integers(-2, 12).map(str),
        "size": JSON | st.sampled_from([*SIZES, "64X64", " 64x64", "0x0"]),
        "response_format": JSON | st.sampled_from([*RESPONSE_FORMATS, "URL", "png"]),
        "model": JSON,
    },
)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(fields=FIELDS)
def test_request_fields_are_valid_or_a_400(demo_model, fields: dict):
    """Any JSON values give either fields the model accepts or an OpenAI-format 400 naming the field (the route
    validates its body as `ImageRequest`, and answers pydantic's errors with `validation_error`)."""
    try:
        request = ImageRequest.model_validate(fields)
    except ValidationError as errors:
        e = validation_error(errors.errors())
        assert e.status == 400 and e.param in {"prompt", "n", "size", "response_format"}
        assert e.param in e.message and e.response().status_code == 400
        return
    prompt, n = request.prompt, request.n
    assert isinstance(prompt, str) and prompt.strip() and len(prompt) <= MAX_PROMPT_CHARS
    assert type(n) is int and 1 <= n <= MAX_N
    assert request.size in SIZES and request.response_format in RESPONSE_FORMATS
    try:
        demo_model.check_prompt(
            prompt
        )  # what the route calls next; its ValueErrors are answered as 400
    except ValueError as e:
        assert "unicode" in str(e).lower()


def _png_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.open(SCENE).save(buffer, format="PNG")
    return buffer.getvalue()


PNG = _png_bytes()
UPLOADS = (
    st.binary(max_size=2000)
    | st.integers(0, len(PNG)).map(lambda k: PNG[:k])
    | st.tuples(st.integers(0, len(PNG) - 1), st.integers(0, 255)).map(
        lambda kv: PNG[: kv[0]] + bytes([kv[1]]) + PNG[kv[0] + 1 :]
    )
)


@settings(max_examples=150, deadline=None)
@given(data=UPLOADS)
def test_uploads_are_an_image_or_a_400(data: bytes):
    """Random, truncated and corrupted PNG bytes give a loaded image or a clear 400, nothing else."""
    try:
        image = asyncio.run(_read_image(UploadFile(io.BytesIO(data)), "image"))
    except APIError as e:
        assert e.status == 400 and e.param == "image" and "image" in e.message
        return
    assert image.size[0] * image.size[1] > 0
    np.asarray(image.convert("RGBA"))  # decoded, convertible
