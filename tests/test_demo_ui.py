"""The Gradio app (demo.app) end to end through `gradio_client`, against the app served by `create_app` on loopback."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from conftest import LiveServer
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from demo.app import CACHE_EXPIRY

SCENE = (
    Path(__file__).resolve().parent.parent / "assets" / "examples" / "scene-38.png"
)  # 256 px, 4x enlarged
# candidates, images to show, temperature, top-k, top-p, guidance, seed, random seed
SETTINGS = (4, 2, 1.0, 64, 1.0, 3.0, 7, False)
# Gradio's queue uses pandas in a way pandas 3 warns about; not ours
pytestmark = pytest.mark.filterwarnings("ignore:.*(no_silent_downcasting|copy keyword)")


@pytest.fixture(scope="module")
def client(demo_server: LiveServer) -> Client:
    return Client(demo_server.url, verbose=False, analytics_enabled=False)


def pixels(path: str) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def native(path: str) -> np.ndarray:
    """The 64 px image shown 4x enlarged in the app."""
    image = pixels(path)
    assert image.shape == (256, 256, 3)
    small = image[::4, ::4]
    assert (small.repeat(4, 0).repeat(4, 1) == image).all(), (
        "not a crisp nearest-neighbour enlargement"
    )
    return small


def layer(tmp_path: Path, top: int, left: int, size: int = 256) -> str:
    """A transparent RGBA layer with a painted (alpha > 0) blob whose top-left is (top, left)."""
    rgba = np.zeros((size, size, 4), np.uint8)
    rgba[top : top + 40, left : left + 30] = (255, 0, 200, 150)
    path = tmp_path / f"layer-{top}-{left}.png"
    Image.fromarray(rgba, "RGBA").save(path)
    return str(path)


def test_generate_ranks_and_reproduces(client: Client):
    gallery, status, seed = client.predict("a red circle", *SETTINGS, api_name="/generate")
    assert len(gallery) == 2 and seed == 7
    scores = [float(item["caption"].split("score ")[1]) for item in gallery]
    assert scores == sorted(scores, reverse=True)  # best first, captioned with the score
    assert all(Path(item["image"]).suffix == ".png" for item in gallery)
    assert "best 2 of 4 candidates in" in status and " s (seed 7)" in status
    again, _, _ = client.predict("a red circle", *SETTINGS, api_name="/generate")
    assert (
        native(again[0]["image"]) == native(gallery[0]["image"])
    ).all()  # same seed, same images


def test_generate_streams_previews_of_all_candidates(client: Client):
    job = client.submit("two blue squares", *SETTINGS, api_name="/generate")
    job.result()
    updates = job.outputs()
    assert len(updates) > 2  # one per sampled row, then the results
    first_gallery, first_status, _ = updates[0]
    assert len(first_gallery) == 4 and first_gallery[0]["caption"] == "candidate 1"
    assert first_status.startswith("Sampling row 1 of")
    assert len(updates[-1][0]) == 2


def test_random_seed_is_reported(client: Client):
    _, status, seed = client.predict(
        "a red circle", 2, 1, 1.0, 64, 1.0, 3.0, 0, True, api_name="/generate"
    )
    assert isinstance(seed, int) and f"(seed {seed})" in status


def test_unknown_words_are_pointed_out_once(client: Client):
    note = client.predict(
        "a red zebra", api_name="/check_prompt"
    )  # the note under the prompt as it is typed
    assert (
        "never saw in training (they have no effect): **zebra**" in note
        and "*shapes* circle" in note
    )
    assert client.predict("a red circle", api_name="/check_prompt") == ""
    _, status, _ = client.predict("a red zebra", *SETTINGS, api_name="/generate")
    assert "zebra" not in status and "cannot be checked" in status  # said once, under the prompt


def test_results_are_checked_against_the_prompt(client: Client):
    gallery, status, _ = client.predict("a red circle", *SETTINGS, api_name="/generate")
    marks = [item["caption"].split(" · ")[0][-1] for item in gallery]  # "#1 ✓ · score 82.9"
    assert set(marks) <= {"✓", "✗"} and f"✓ {marks.count('✓')} of 2 match the prompt" in status
    assert "Score: how well" in status.replace("*", "")


@pytest.mark.parametrize(
    "prompt, settings, words",
    [
        ("", SETTINGS, "prompt is empty"),
        ("   ", SETTINGS, "prompt is empty"),
        (
            "a red circle",
            (4, 2, 0.0, 64, 1.0, 3.0, 7, False),
            "less than minimum value 0.1",
        ),  # Gradio checks ranges
        ("a red circle", (4, 2, 1.0, 64, 1.0, 3.0, -1, False), "less than minimum value 0"),
    ],
)
def test_bad_inputs_get_clear_errors(client: Client, prompt: str, settings: tuple, words: str):
    with pytest.raises(AppError, match=words):
        client.predict(prompt, *settings, api_name="/generate")


def test_complete_with_a_painted_mask_keeps_the_rest(client: Client, tmp_path: Path):
    editor = {
        "background": handle_file(str(SCENE)),
        "layers": [handle_file(layer(tmp_path, 130, 165))],
        "composite": None,
    }
    preview, row, col, status, note = client.predict(
        editor, "painted mask", 0, 0, api_name="/preview_region"
    )
    assert (row, col) == (4, 5)  # pixel (130, 165) of 256 is in token cell (4, 5) of 8
    assert (
        "rows 4-7 and columns 5-7" in status and note == ""
    )  # the scene is exactly what the model sees
    outlined = pixels(preview)
    assert outlined.shape == (256, 256, 3) and (outlined[:128] == pixels(str(SCENE))[:128]).all()
    gallery, status, _ = client.predict(
        editor,
        "a pink circle above a large blue square",
        "painted mask",
        0,
        0,
        *SETTINGS,
        api_name="/complete",
    )
    original = native(str(SCENE))
    assert len(gallery) == 2 and "best 2 of 4" in status
    for item in gallery:
        out = native(item["image"])
        assert (out[:32] == original[:32]).all() and (out[:, :40] == original[:, :40]).all()


def test_complete_with_sliders(client: Client):
    editor = {"background": handle_file(str(SCENE)), "layers": [], "composite": None}
    _, row, col, status, _ = client.predict(editor, "sliders", 6, 2, api_name="/preview_region")
    assert (row, col) == (6, 2) and "rows 6-7 and columns 2-7" in status
    gallery, _, _ = client.predict(
        editor, "a blue square", "sliders", 6, 2, *SETTINGS, api_name="/complete"
    )
    original = native(str(SCENE))
    for item in gallery:
        out = native(item["image"])
        assert (out[:48] == original[:48]).all() and (out[:, :16] == original[:, :16]).all()


def test_edit_errors(client: Client):
    nothing_painted = {"background": handle_file(str(SCENE)), "layers": [], "composite": None}
    with pytest.raises(AppError, match="Paint over the area to redraw"):
        client.predict(
            nothing_painted, "a red circle", "painted mask", 0, 0, *SETTINGS, api_name="/complete"
        )
    with pytest.raises(AppError, match="no image to edit"):
        client.predict(None, "a red circle", "sliders", 4, 4, *SETTINGS, api_name="/complete")
    with pytest.raises(AppError, match="prompt is empty"):
        client.predict(nothing_painted, "", "sliders", 4, 4, *SETTINGS, api_name="/complete")


def test_any_image_is_converted_and_the_user_told(client: Client, tmp_path: Path):
    wide = tmp_path / "wide.png"
    Image.new("LA", (300, 180), (90, 200)).save(wide)  # grey with alpha, not square
    # painted at x >= 210 of 300: in the central 180 px square (x from 60) that is from x = 150 of 180
    paint = np.zeros((180, 300, 4), np.uint8)
    paint[100:, 210:] = 255
    Image.fromarray(paint, "RGBA").save(tmp_path / "paint.png")
    editor = {
        "background": handle_file(str(wide)),
        "layers": [handle_file(str(tmp_path / "paint.png"))],
        "composite": None,
    }
    preview, row, col, _, note = client.predict(
        editor, "painted mask", 0, 0, api_name="/preview_region"
    )
    assert note == (
        "Your 300x180 px image was cropped to its central 180x180 px square (framed in *Region to redraw*; "
        "the dimmed parts are left out) and scaled to 64x64 px, the model's resolution."
    )
    assert (row, col) == (4, 6)  # 100 / 180 * 8 = 4.4 and 150 / 180 * 8 = 6.7
    framed = pixels(
        preview
    )  # the square the model keeps, 4x, with 32 px of the cut-off sides dimmed
    assert framed.shape == (256, 320, 3) and (framed[:, 34:286] != framed[:, 2:3]).any()
    gallery, status, _ = client.predict(
        editor, "a gray background", "painted mask", 0, 0, *SETTINGS, api_name="/complete"
    )
    assert (
        len(gallery) == 2 and "best 2 of 4" in status and note not in status
    )  # said once, by the image


def test_model_card_summary(tmp_path: Path):
    from dalle_core import DEFAULT_CHECKPOINT
    from demo.app import model_card_summary

    card = tmp_path / "MODEL_CARD.md"
    assert "will appear here once" in model_card_summary(card, DEFAULT_CHECKPOINT)
    card.write_text(
        "# Model card\n\nIntro.\n\n## Summary\n- GenEval-style accuracy: 0.5\n\n## Training\nLong.\n"
    )
    summary = model_card_summary(card, DEFAULT_CHECKPOINT)
    assert "accuracy: 0.5" in summary and "Intro" not in summary and "Long" not in summary
    assert "this app runs" in model_card_summary(card, tmp_path)  # another checkpoint: said so


def test_crop_box_frames_the_square_the_model_keeps():
    from demo.media import crop_box, outline_region

    square = outline_region(
        np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8), (32, 32), 256
    )
    wide = np.zeros((180, 300, 4), np.uint8)
    wide[..., 1], wide[..., 3] = 200, 255
    wide[:, :60, 0] = 220  # the part cut off on the left is yellow-green, the rest green
    framed = np.asarray(crop_box(wide, square))
    assert framed.shape == (256, 320, 3)  # the square at its size, 32 px of each cut-off side
    assert (framed[:, 32:288] == np.asarray(square)).all()  # the model's pixels, untouched
    assert (
        100 < framed[128, 10, 0] < 220 and framed[128, 300, 0] < 100
    )  # dimmed, and from the right place
    assert (framed[128, 30] == 0).all() and (
        framed[128, 31] == 255
    ).all()  # a black and white frame
    assert crop_box(np.zeros((4096, 1, 3), np.uint8), square).size == (
        256,
        320,
    )  # only what is shown is resampled


def cached_files(app) -> set[Path]:
    """The files the Gradio app mounted in `app` has put in Gradio's cache folder."""
    (blocks,) = [
        r.app.get_blocks() for r in app.routes if hasattr(getattr(r, "app", None), "get_blocks")
    ]
    return {Path(f) for files in blocks.temp_file_sets for f in files}


def test_the_server_deletes_the_images_it_cached(demo_model, monkeypatch):
    """Gradio copies every image it serves into its cache folder; the app has it delete old ones as it runs and
    the rest when the server stops, so a server left running does not fill the disk (the few the page itself
    shows, such as the editor's examples, stay)."""
    import demo.app
    from demo.server import create_app

    assert CACHE_EXPIRY == (3600, 86400)  # the app's: every hour, the copies a day old
    monkeypatch.setattr(demo.app, "CACHE_EXPIRY", (1, 5))  # every second, 5 s old
    app = create_app(demo_model, max_candidates=4)
    with LiveServer(app) as server:
        client = Client(server.url, verbose=False, analytics_enabled=False)
        page = cached_files(app)
        client.predict("a red circle", *SETTINGS, api_name="/generate")
        first = cached_files(app) - page
        assert first and all(f.is_file() for f in first)
        deadline = time.monotonic() + 30
        while any(f.exists() for f in first) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(f.exists() for f in first)  # deleted while the server runs
        client.predict("a blue square", *SETTINGS, api_name="/generate")
        second = cached_files(app) - page
        assert second
        client.close()
    assert not any(f.exists() for f in second)  # deleted when it stops
