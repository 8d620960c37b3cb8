"""The app and the API on a second-edition model (96 px, a 12 x 12 token grid).

`dalle train all --tiny --v2` trains one end to end through the real command line, and the tests serve it on
loopback. Its images are those of a barely trained model: the tests check what the app and the API do with a
96 px model (sizes, regions, kept pixels, examples and puzzles), not how good its images are.
"""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import openai
import pytest
import torch
from conftest import CHROMIUM, DEMO_API_KEY, LiveServer
from PIL import Image
from playwright.sync_api import Browser, Page
from test_demo_browser import app_page, screenshot, wait_for_text

from dalle_core import Dalle
from demo.examples import PROMPTS, prompts_for, puzzles
from demo.media import native_pixels, png_bytes

pytestmark = pytest.mark.filterwarnings("ignore:.*(no_silent_downcasting|copy keyword)")
browser_only = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no Chromium at {CHROMIUM}")


@pytest.fixture(scope="module")
def v2_checkpoint(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tiny2")
    command = [
        "train",
        "all",
        "--tiny",
        "--v2",
        "--out",
        str(out),
        "--threads",
        "2",
        "--workers",
        "0",
    ]
    r = subprocess.run(
        [sys.executable, "-m", "dalle_core.cli", *command],
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def v2_model(v2_checkpoint: Path) -> Dalle:
    import torch

    torch.set_num_threads(1)
    return Dalle(v2_checkpoint, device="cpu")


@pytest.fixture(scope="module")
def v2_server(v2_model: Dalle) -> Iterator[LiveServer]:
    from demo.server import create_app

    app = create_app(
        v2_model, api_key=DEMO_API_KEY, api_candidates=2, max_candidates=16, max_waiting=0
    )
    with LiveServer(app) as server:
        yield server


def validations(run: Path) -> list[dict]:
    """The validation rows of a run's log."""
    rows = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    return [row["val"] for row in rows if "val" in row]


def test_the_tiny_v2_recipe_makes_a_96_px_model_validated_on_the_v2_measures(
    v2_checkpoint: Path, v2_model: Dalle
):
    assert (v2_model.image_size, v2_model.grid, v2_model.tokenizer.length) == (96, 12, 40)
    vae = validations(v2_checkpoint / "runs" / "vae")[-1]
    assert all(
        0 <= vae[f"faithful_{kind}"] <= 1 for kind in ("single", "pair", "analogy", "matrix")
    )
    assert 0 <= validations(v2_checkpoint / "runs" / "transformer")[-1]["val_pass"] <= 1


def test_examples_follow_the_model(v2_model: Dalle, demo_model: Dalle):
    """The app offers the prompts a model reads and the puzzles its grid holds: the v1 model gets the v1 prompts
    and no matrix (3 x 3 panels do not fall on an 8 x 8 grid)."""
    assert prompts_for(lambda p: not demo_model.unknown_words(p)) == PROMPTS[:6]
    v2_prompts = prompts_for(lambda p: not v2_model.unknown_words(p))
    assert "a red triangle pointing left" in v2_prompts and len(v2_prompts) > 6
    assert [label for label, *_ in puzzles(96, 12)] == [
        "translation: mirrored",
        "translation: another color",
        "analogy: D missing",
        "matrix: panel 9 missing",
    ]
    assert "matrix: panel 9 missing" not in [label for label, *_ in puzzles(64, 8)]


def test_images_shown_go_back_to_the_model_pixel_for_pixel(v2_model: Dalle):
    """A 96 px model's images are shown at 192 px (a whole multiple), so an image sent to the editor, or
    downloaded and uploaded again, is the model's own pixels."""
    from demo.app import Handlers
    from demo.scheduler import Scheduler

    image, handlers = puzzles(96, 12)[-1][1], Handlers(Scheduler(v2_model))
    shown = np.asarray(Image.open(handlers.picture(image)))
    assert shown.shape == (192, 192, 3) and (native_pixels(shown, 96) == image).all()


def test_the_v2_model_completes_panel_d_last_with_gray_where_not_drawn_yet(v2_model: Dalle):
    """The v2 recipe streams image tokens in panel order: completing an analogy's panel D samples its 36 cells
    last, in three runs of 12; every preview keeps panels A-C and shows D's cells not drawn yet gray."""
    from dalle_core.dalle import PARTIAL_GRAY
    from dalle_core.transformer import token_order

    assert v2_model.transformer.config.order == "panels"
    assert torch.equal(v2_model.transformer.order, token_order("panels", 12))
    label, image, prompt, (row, col) = puzzles(96, 12)[2]
    assert label == "analogy: D missing" and (row, col) == (6, 6)
    given = v2_model.prepare_image(image)
    updates = list(v2_model.complete_stream(given, prompt, region=(row, col), n=1, candidates=2))
    assert [u.rows_done for u in updates] == [1, 2, 3] and updates[-1].results
    for u in updates:
        for preview in u.previews:
            assert (preview[:48] == given[:48]).all() and (
                preview[48:, :48] == given[48:, :48]
            ).all()
    first = updates[0].previews[0][48:, 48:]  # D after its first 12 cells: rows 6-7, then gray
    assert (first[16:] == PARTIAL_GRAY).all() and not (first[:16] == PARTIAL_GRAY).all()


def test_a_12_row_stream_decodes_previews_of_every_second_row(v2_model: Dalle, demo_model: Dalle):
    """At most `PREVIEWS` (8) decodes of previews a request: every row of the 64 px model's 8, the first and
    every second of a 96 px model's 12 (the app shows no more); every row still reports its progress."""
    updates = list(v2_model.generate_stream("a red circle", n=1, candidates=2))
    assert [u.rows_done for u in updates] == list(range(1, 13))
    assert [u.rows_done for u in updates if u.previews and u.results is None] == [1, 2, 4, 6, 8, 10]
    assert updates[-1].results and len(updates[-1].previews) == 2
    updates = list(demo_model.generate_stream("a red circle", n=1, candidates=2))
    assert all(len(u.previews) == 2 for u in updates)


def test_the_api_completes_a_puzzle_under_a_mask_and_keeps_the_rest(v2_server: LiveServer):
    """An analogy with panel D masked: each image keeps panels A-C and is 96 px, the model's own size; 64x64 is
    refused with the size to ask for."""
    _, image, prompt, (r, c) = puzzles(96, 12)[2]
    mask = np.full((192, 192, 4), 255, np.uint8)
    mask[r * 16 :, c * 16 :, 3] = 0  # panel D, at the upload's 2x scale
    upload = png_bytes(Image.fromarray(image).resize((192, 192), Image.Resampling.NEAREST))
    client = openai.OpenAI(base_url=f"{v2_server.url}/v1", api_key=DEMO_API_KEY, max_retries=0)
    request = dict(
        image=("puzzle.png", upload, "image/png"),
        mask=("mask.png", png_bytes(Image.fromarray(mask)), "image/png"),
        prompt=prompt,
        n=2,
        response_format="b64_json",
    )
    response = client.images.edit(size="96x96", **request)
    outside = np.ones((96, 96), bool)
    outside[r * 8 :, c * 8 :] = False
    for item in response.data:
        result = np.asarray(Image.open(io.BytesIO(base64.b64decode(item.b64_json))).convert("RGB"))
        assert result.shape == (96, 96, 3) and (result[outside] == image[outside]).all()
    with pytest.raises(openai.BadRequestError, match="ask for 96x96"):
        client.images.edit(size="64x64", **request)


@browser_only
def test_a_puzzle_example_completes_in_one_click(
    browser: Browser, v2_server: LiveServer, tmp_path: Path
):
    """A click on the matrix puzzle puts it in the editor with its prompt and panel 9 as the region, and
    completes it: every completion keeps panels 1-8."""
    with app_page(browser, v2_server.url, 1280, 1000) as page:
        page.get_by_role("tab", name="Edit").click()
        page.get_by_text("matrix: panel 9 missing").click()
        wait_for_text(page, "#complete-status", "candidates in")
        assert page.input_value("#edit-prompt textarea") == "a puzzle"
        wait_for_text(page, "#edit-status", "Redrawing token rows 8-11 and columns 8-11")
        _, puzzle, _, _ = puzzles(96, 12)[3]
        outside = np.ones((96, 96), bool)
        outside[64:, 64:] = False
        shown = completions(page)
        assert len(shown) == 4 and all((im[outside] == puzzle[outside]).all() for im in shown)
        screenshot(page, tmp_path, "v2-puzzle")


@browser_only
def test_any_image_goes_to_the_top_half_for_a_transform(
    browser: Browser, v2_server: LiveServer, tmp_path: Path
):
    """An example scene, moved into the top half with a transform chosen, becomes a pair to complete: the prompt
    is the transform and the region the bottom half."""
    with app_page(browser, v2_server.url, 1280, 1000) as page:
        page.get_by_role("tab", name="Edit").click()
        page.get_by_text("a pink circle above a large blue square").click()
        page.wait_for_function(
            "document.querySelector('#edit-prompt textarea').value.includes('pink circle')"
        )
        page.locator("#transform input").click()
        page.get_by_role("option", name="the same mirrored on the bottom").click()
        page.click("#top-half")
        page.wait_for_function(
            "document.querySelector('#edit-prompt textarea').value === "
            "'the same mirrored on the bottom'"
        )
        wait_for_text(page, "#edit-status", "Redrawing token rows 6-11 and columns 0-11")
        page.click("#complete")
        wait_for_text(page, "#complete-status", "candidates in")
        shown = completions(page)
        top = [im[:48] for im in shown]
        assert len(shown) == 4 and all((t == top[0]).all() for t in top)  # the top half is kept
        screenshot(page, tmp_path, "v2-top-half")


def completions(page: Page) -> list[np.ndarray]:
    """The Edit tab's ranked completions, at the model's 96 px (from the 192 px images shown)."""
    images = []
    for img in page.locator("#edit-gallery img[alt*='score']").all():
        data = page.request.get(img.get_attribute("src")).body()
        images.append(native_pixels(np.asarray(Image.open(io.BytesIO(data)).convert("RGB")), 96))
    return images


def test_eval_completion_on_a_second_edition_model(v2_model: Dalle):
    """`dalle eval`'s completion trial on a 96 px, 12 x 12 model: the scene is drawn at the model's size and the
    bottom-right quarter of its grid is redrawn (it crashed comparing a 64 px scene with a 96 px image)."""
    from dalle_core.report import evaluate

    row = evaluate(v2_model, per_category=2, candidates=2, categories=["completion"])["results"][
        "completion"
    ]
    assert all(0 <= row[label] <= 1 for label in ("best_of_1", "best_of_2")), row
