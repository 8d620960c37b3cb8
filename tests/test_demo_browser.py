"""The app in a real browser: Playwright driving Debian's Chromium against the app served on loopback.

Screenshots go to pytest's tmp dir; set DALLE_SCREENSHOT_DIR (e.g. assets/screenshots) to also keep
one of each tab there (desktop and phone), for the README. The page must not fetch anything from outside this computer.
The tests of issue 32 (a new user's trial of the app) run on a desktop (1280x900, light) and a phone
(390x844, dark) screen, and keep a screenshot of each.
"""

from __future__ import annotations

import base64
import io
import os
import re
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

import pytest
from conftest import CHROMIUM, LiveServer
from PIL import Image
from playwright.sync_api import Browser, Page

TIMEOUT_MS = 60_000
SIZES = {
    "desktop": (1280, 900, "light"),
    "phone": (390, 844, "dark"),
}  # viewport width, height, colour scheme
README_SCREENSHOT = {tab: {"desktop": tab, "phone": f"{tab}-phone"} for tab in ("generate", "edit")}
TILE = {
    "desktop": 256,
    "phone": 128,
}  # the side of a result in the gallery: a whole multiple of the model's 64 px
pytestmark = [
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no Chromium at {CHROMIUM}"),
    pytest.mark.filterwarnings(
        "ignore:.*(no_silent_downcasting|copy keyword)"
    ),  # Gradio's use of pandas
]


@contextmanager
def app_page(
    browser: Browser, url: str, width: int, height: int, scheme: str = "light"
) -> Iterator[Page]:
    """The app's page, freshly loaded at a viewport size; fails if the page requested anything not on loopback."""
    page = browser.new_page(viewport={"width": width, "height": height}, color_scheme=scheme)
    page.set_default_timeout(TIMEOUT_MS)
    outside = []
    page.on(
        "request",
        lambda r: (
            outside.append(r.url)
            if urlparse(r.url).hostname not in ("127.0.0.1", None)
            and not r.url.startswith(("data:", "blob:"))
            else None
        ),
    )
    page.goto(url)
    page.wait_for_selector("#prompt textarea")
    yield page
    page.close()
    assert not outside, f"the page fetched from outside: {outside}"


@pytest.fixture
def page(browser: Browser, demo_server: LiveServer) -> Iterator[Page]:
    with app_page(browser, demo_server.url, 1280, 1000) as page:
        yield page


@pytest.fixture(params=list(SIZES))
def sized(request, browser: Browser, demo_server: LiveServer) -> Iterator[tuple[str, Page]]:
    """("desktop" or "phone", the app's page on that screen)."""
    width, height, scheme = SIZES[request.param]
    with app_page(browser, demo_server.url, width, height, scheme) as page:
        yield request.param, page


def screenshot(page: Page, tmp_path: Path, name: str, keep: bool = False) -> Path:
    """Save a full-page screenshot in tmp_path, and if `keep`, in $DALLE_SCREENSHOT_DIR (when set)."""
    path = tmp_path / f"{name}.png"
    page.evaluate(
        "Promise.all([...document.images].map(image => image.decode().catch(() => null)))"
    )
    page.screenshot(path=str(path), full_page=True)
    assert Image.open(path).size[0] == page.viewport_size["width"]
    if keep and os.environ.get("DALLE_SCREENSHOT_DIR"):
        keep = Path(os.environ["DALLE_SCREENSHOT_DIR"])
        keep.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, keep / f"{name}.png")
    return path


def markdown(page: Page, elem_id: str) -> str:
    """The text of a Markdown block (without the hidden text of its status tracker)."""
    return page.inner_text(f"#{elem_id} [data-testid=markdown]").strip()


def wait_for_text(page: Page, selector: str, text: str) -> None:
    page.wait_for_function(
        "([s, t]) => (document.querySelector(s)?.innerText || '').includes(t)", arg=[selector, text]
    )


def set_slider(page: Page, elem_id: str, value: int) -> None:
    """Type a value into a slider's number box, as a user would."""
    box = page.locator(f"#{elem_id} input[type=number]")
    box.fill(str(value))
    box.press("Enter")


def paint(page: Page, start: tuple[float, float], end: tuple[float, float]) -> None:
    """Drag the mouse over the editor's image, between fractions of its size."""
    page.wait_for_function(
        "!document.querySelector('#editor [data-testid=status-tracker]:not(.hide)')"
    )
    canvas = page.locator("#editor canvas").first.bounding_box()
    # the image sits centred in the canvas area at its zoom; paint inside its lower-right part
    side = min(canvas["width"], canvas["height"]) * 0.8
    left, top = (
        canvas["x"] + (canvas["width"] - side) / 2,
        canvas["y"] + (canvas["height"] - side) / 2,
    )
    page.mouse.move(left + start[0] * side, top + start[1] * side)
    page.mouse.down()
    page.mouse.move(left + end[0] * side, top + end[1] * side, steps=12)
    page.mouse.up()


def generate(page: Page, prompt: str) -> None:
    page.fill("#prompt textarea", prompt)
    page.click("#generate")
    wait_for_text(page, "#gen-status", "candidates in")
    page.wait_for_selector("#gallery img[alt*='score']")


def test_generate(page: Page, tmp_path: Path):
    page.fill("#prompt textarea", "a red zebra")
    wait_for_text(page, "body", "Words the model never saw in training")
    page.get_by_text("a yellow triangle above a green diamond").click()  # an example prompt
    page.wait_for_function(
        "document.querySelector('#prompt textarea').value.includes('yellow triangle')"
    )
    page.click("#generate")
    page.wait_for_selector(
        "#gallery img[alt^='candidate']"
    )  # previews while sampling (or the results)
    wait_for_text(page, "#gen-status", "The best 4 of 16 candidates in")
    images = page.locator("#gallery img[alt*='score']")
    assert images.count() == 4 and re.match(
        r"#1 [✓✗] · score \d+\.\d$", images.first.get_attribute("alt")
    )
    screenshot(page, tmp_path, "generate-1280x1000")


def test_empty_prompt_shows_an_error(page: Page):
    page.click("#generate")
    toast = page.locator("[data-testid='toast-body']")
    toast.wait_for()
    assert "The prompt is empty" in toast.inner_text()


def test_send_to_editor_paint_and_complete(page: Page, tmp_path: Path):
    generate(page, "a purple circle on a black background")
    page.click("#to-editor")
    wait_for_text(page, "#edit-status", "Paint over the area")
    assert page.input_value("#edit-prompt textarea") == "a purple circle on a black background"
    paint(page, (0.6, 0.55), (0.9, 0.9))
    wait_for_text(page, "#edit-status", "Redrawing token rows")
    assert page.locator("#mode input[value='painted mask']").is_checked()
    page.click("#complete")
    wait_for_text(page, "#complete-status", "The best 4 of 16 candidates in")
    assert page.locator("#edit-gallery img[alt*='score']").count() == 4
    screenshot(page, tmp_path, "edit-1280x1000")


def test_upload_any_image_and_use_sliders(page: Page, tmp_path: Path):
    upload = tmp_path / "photo.png"
    Image.new("RGBA", (300, 180), (30, 200, 30, 255)).save(upload)
    page.get_by_role("tab", name="Edit").click()
    page.locator("#editor canvas").first.wait_for()  # the editor is ready
    page.locator("#editor input[type=file]").set_input_files(str(upload))
    wait_for_text(
        page, "#image-status", "Your 300x180 px image was cropped to its central 180x180 px square"
    )
    set_slider(page, "row", 2)
    wait_for_text(page, "#edit-status", "Redrawing token rows 2-7 and columns 4-7")
    assert page.locator(
        "#mode input[value='sliders']"
    ).is_checked()  # moving a slider switches to them
    page.fill("#edit-prompt textarea", "a green square")
    page.click("#complete")
    wait_for_text(page, "#complete-status", "candidates in")
    assert page.locator("#edit-gallery img[alt*='score']").count() == 4
    screenshot(page, tmp_path, "edit-sliders")


def test_example_scene_fills_editor_and_prompt(page: Page):
    page.get_by_role("tab", name="Edit").click()
    page.get_by_text("a pink circle above a large blue square").click()
    page.wait_for_function(
        "document.querySelector('#edit-prompt textarea').value.includes('pink circle')"
    )
    page.click("#complete")  # nothing painted yet: a clear message
    toast = page.locator("[data-testid='toast-body']")
    toast.wait_for()
    assert "Paint over the area to redraw" in toast.inner_text()


# ------------------------------------------------------------------ issue 32: the app as a new user finds it

# Watches the Generate tab from the next frame on: the gallery's images, the status line, the button and every
# progress text, once per frame; and each batch of changes that removes an image from the gallery.
WATCH_GENERATE = """() => {
  const images = () => document.querySelectorAll('#gallery .grid-container img');
  window.watched = {frames: [], removals: [], stop: false};
  new MutationObserver(batch => {
    const removed = batch.filter(m => m.target.closest?.('#gallery')).flatMap(m => [...m.removedNodes])
      .flatMap(n => n.nodeName === 'IMG' ? [n] : n.querySelectorAll ? [...n.querySelectorAll('img')] : []);
    if (removed.length) window.watched.removals.push({removed: removed.length, left: images().length});
  }).observe(document.body, {childList: true, subtree: true});
  const frame = () => {
    if (!window.watched.stop) requestAnimationFrame(frame);
    const button = document.querySelector('#generate');
    const shown = [...document.querySelectorAll('[data-testid=status-tracker]:not(.hide)')]
      .filter(e => e.getBoundingClientRect().width > 0 && getComputedStyle(e).opacity !== '0');
    window.watched.frames.push({
      images: images().length, first: images()[0]?.alt ?? '',
      status: document.querySelector('#gen-status [data-testid=markdown]')?.innerText.trim() ?? '',
      rows: (document.body.innerText.match(/row \\d+ of \\d+/g) || []).length,
      trackers: shown.length, disabled: button?.disabled, label: button?.innerText.trim(),
      top: document.querySelector('#gallery')?.getBoundingClientRect().top, time: Date.now() / 1000});
  };
  requestAnimationFrame(frame);
}"""


@contextmanager
def screencast(page: Page) -> Iterator[list[tuple[float, str]]]:
    """Every frame the browser paints while in the block, from Chromium's screencast: (when, in seconds; a base64
    PNG of the viewport)."""
    frames: list[tuple[float, str]] = []
    cdp = page.context.new_cdp_session(page)

    def keep(event: dict) -> None:
        frames.append((event["metadata"]["timestamp"], event["data"]))
        cdp.send("Page.screencastFrameAck", {"sessionId": event["sessionId"]})

    cdp.on("Page.screencastFrame", keep)
    cdp.send("Page.startScreencast", {"format": "png"})
    try:
        yield frames
    finally:
        cdp.send("Page.stopScreencast")
        cdp.detach()


def pixels_at(frames: list[tuple[float, str]], x: float, y: float) -> list[tuple[int, int, int]]:
    """The colour of viewport point (x, y) in each frame."""
    return [
        Image.open(io.BytesIO(base64.b64decode(f))).convert("RGB").getpixel((int(x), int(y)))
        for _, f in frames
    ]


def near(a: tuple[int, ...], b: tuple[int, ...], tolerance: int = 8) -> bool:
    return all(abs(p - q) <= tolerance for p, q in zip(a, b, strict=True))


def test_streaming_keeps_the_previews_and_one_status_line(sized: tuple[str, Page], tmp_path: Path):
    """Issue 32.1 and 7: while sampling, the previews are never blanked or replaced (no progress overlay), one
    status line counts the rows, and the button is busy (a second press, here Enter, starts nothing)."""
    size, page = sized
    page.fill("#prompt textarea", "a purple circle on a black background")
    page.evaluate(WATCH_GENERATE)
    with screencast(page) as frames:
        page.click("#generate")
        page.wait_for_selector("#gallery img[alt='candidate 1']")
        first = page.locator("#gallery img[alt='candidate 1']").bounding_box()
        blank = tuple(
            int(v)
            for v in re.findall(
                r"\d+",
                page.evaluate(
                    "getComputedStyle(document.querySelector('#gallery .thumbnail-item')).backgroundColor"
                ),
            )[:3]
        )
        # the button is disabled: Enter presses nothing (typed into the prompt as a user does, who has it in view:
        # Playwright's press would scroll it into view, and the page with it, by 8 px)
        page.locator("#prompt textarea").evaluate("e => e.focus({preventScroll: true})")
        page.keyboard.press("Enter")
        wait_for_text(page, "#gen-status", "The best 4 of 16 candidates in")
        page.wait_for_function("!document.querySelector('#generate').disabled")
        time.sleep(1)  # time for a second run to start, if one had been asked for
    watched = page.evaluate("window.watched.stop = true, window.watched")
    sampling = [f for f in watched["frames"] if "Sampling row" in f["status"]]
    assert len(sampling) > 5 and all(f["images"] == 16 for f in sampling)
    # The gallery stays put (so the pixels below are the first candidate's in every frame).
    assert len({f["top"] for f in sampling}) == 1, sorted({f["top"] for f in sampling})
    # In the first candidate's last row of tokens: the gray of rows not sampled yet in every frame painted from
    # the first preview until the results came, then never the tile's background, which a blank would show.
    # The results came when the gallery's first tile became result #1 (screencast and page share the clock; the
    # image the tile shows changes after its element does).
    # Chromium can paint a tile empty for a frame when its image changes before the last one was decoded (about
    # once in 20 runs, at the first preview, on a busy machine): one such frame, followed by a painted one, is
    # let pass. Its duration is not checked: screencast timestamps ran up to 33 ms out of order, and one frame
    # lasted up to 150 ms, on a busy machine. The progress overlay this test was written against covered the
    # previews at every update.
    colours = pixels_at(
        frames, first["x"] + first["width"] / 2, first["y"] + first["height"] * 0.95
    )
    gray = (200, 200, 200)  # dalle.PARTIAL_GRAY
    start = next(i for i, c in enumerate(colours) if near(c, gray))
    came = next(f["time"] for f in watched["frames"] if f["first"].startswith("#1"))
    previews = [i for i in range(start, len(colours)) if frames[i][0] < came]
    odd = {i for i in previews if not near(colours[i], gray)}
    odd |= {i for i in range(start, len(colours) - 1) if near(colours[i], blank, 2)}
    seen = "".join(
        "g" if near(c, gray) else "B" if near(c, blank, 2) else "o" for c in colours[start:]
    )
    assert len(previews) > 3 and len(odd) <= 1, (seen, len(previews))
    # a screenshot while streaming: a frame of the screencast (a screenshot of its own would disturb the stream)
    (tmp_path / f"streaming-{size}.png").write_bytes(
        base64.b64decode(frames[(start + previews[-1]) // 2][1])
    )
    assert watched["removals"] == [
        {"removed": 12, "left": 4}
    ]  # only the 16 previews giving way to the best 4
    assert (
        max(f["rows"] for f in watched["frames"]) == 1 and max(f["trackers"] for f in sampling) == 0
    )
    assert all(
        f["disabled"] and f["label"] == "Generating…" for f in sampling if f["label"] is not None
    )
    assert [f["status"] for f in watched["frames"]].count("Waiting for the model…") >= 1
    assert (
        sum(
            a["status"] != b["status"] == "Waiting for the model…"
            for a, b in zip(watched["frames"], watched["frames"][1:], strict=False)
        )
        == 1
    )  # one run
    assert page.inner_text("#generate").strip() == "Generate"


def test_gallery_columns_follow_the_width(sized: tuple[str, Page], tmp_path: Path):
    """Issue 32.2 and 8: all results on screen without sideways scrolling, whole multiples of 64 px, captions
    whole; four in a row on a desktop, two on a phone."""
    size, page = sized
    generate(page, "two blue squares")
    width = page.viewport_size["width"]
    boxes = [image.bounding_box() for image in page.locator("#gallery .grid-container img").all()]
    assert len(boxes) == 4
    assert all(
        b["width"] == b["height"] == TILE[size] and 0 < b["x"] and b["x"] + b["width"] < width
        for b in boxes
    )
    assert len({b["x"] for b in boxes}) == (4 if size == "desktop" else 2)
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    assert page.evaluate(
        "[...document.querySelectorAll('#gallery .grid-wrap')]"
        ".every(e => e.scrollWidth <= e.clientWidth && e.scrollHeight <= e.clientHeight)"
    )
    assert page.evaluate(
        "[...document.querySelectorAll('#gallery .caption-label')]"
        ".every(e => e.scrollWidth <= e.clientWidth)"
    ), "a caption is clipped"
    screenshot(page, tmp_path, README_SCREENSHOT["generate"][size], keep=True)


def test_results_are_checked_against_the_prompt(sized: tuple[str, Page]):
    """Issue 32.4: each result says plainly whether it matches the prompt; the status line explains the marks
    and what a score means."""
    _, page = sized
    generate(page, "a red circle")
    alts = [
        image.get_attribute("alt") for image in page.locator("#gallery .grid-container img").all()
    ]
    assert all(re.match(r"#\d [✓✗] · score -?\d+\.\d$", alt) for alt in alts), alts
    status = markdown(page, "gen-status")
    assert re.search(r"✓ \d of 4 match the prompt", status) and "Score: how well" in status
    assert status.count("✗ #") == sum("✗" in alt for alt in alts)  # each mismatch says why


def test_unknown_words_are_shown_once_with_the_vocabulary(sized: tuple[str, Page], tmp_path: Path):
    """Issue 32.5: the note on unknown words appears once, under the prompt, and lists what the model knows."""
    size, page = sized
    page.fill("#prompt textarea", "a red zebra")
    wait_for_text(page, "#prompt-note", "never saw in training")
    note = markdown(page, "prompt-note")
    assert "zebra" in note and all(
        word in note for word in ("It knows only these", "colours", "triangle", "above")
    )
    page.press("#prompt textarea", "Enter")  # presses Generate
    wait_for_text(page, "#gen-status", "candidates in")
    body = page.inner_text("body")
    assert body.count("never saw in training") == 1 and body.count("zebra") == 1
    assert page.locator("[data-testid='toast-body']").count() == 0
    assert "cannot be checked" in markdown(
        page, "gen-status"
    )  # not a caption of the world: no marks
    assert not any(
        mark in page.get_attribute("#gallery .grid-container img", "alt") for mark in "✓✗"
    )
    screenshot(page, tmp_path, f"unknown-words-{size}")


def test_long_prompt_note_shows_the_kept_words(sized: tuple[str, Page], tmp_path: Path):
    """Issue 32.8: the note on a prompt too long for the model says which of its words the model reads."""
    size, page = sized
    kept = (
        "a small red circle above a large blue square and two green triangles to the left of three yellow "
        "diamonds on a white background"
    )
    page.fill(
        "#prompt textarea", kept + " circle"
    )  # a known word past the end (an unknown one is left out)
    wait_for_text(page, "#prompt-note", "longer than the model reads")
    assert f"it reads only “{kept}”" in markdown(page, "prompt-note")
    screenshot(page, tmp_path, f"long-prompt-{size}")


def test_enlarged_view_hides_the_grid(sized: tuple[str, Page], tmp_path: Path):
    """Issue 32.6 and 8: the enlarged result covers the grid (no faded, offset ghosts of it) and is shown at
    8x (desktop) or 4x (phone) the model's 64 px."""
    size, page = sized
    generate(page, "a red circle")
    page.locator("#gallery .grid-container img").first.click()
    big = page.locator("#gallery [data-testid=detailed-image]")
    big.wait_for()
    page.wait_for_function(
        "document.querySelector('#gallery [data-testid=detailed-image]').complete"
    )
    box = big.bounding_box()
    assert box["width"] == box["height"] == {"desktop": 512, "phone": 256}[size]
    assert (
        page.evaluate("getComputedStyle(document.querySelector('#gallery .grid-wrap')).visibility")
        == "hidden"
    )
    gallery = page.locator("#gallery").bounding_box()
    left = (
        gallery["x"] + 8
    )  # a strip beside the enlarged image, where the grid used to show through
    strip = Image.open(
        io.BytesIO(
            page.screenshot(
                clip={
                    "x": left,
                    "y": box["y"],
                    "width": box["x"] - 8 - left,
                    "height": box["height"],
                }
            )
        )
    ).convert("RGB")
    assert len(strip.getcolors(1 << 16)) == 1, "something shows through beside the enlarged image"
    screenshot(page, tmp_path, f"enlarged-{size}")


# How many elements that say just "Error" the page shows (not hidden, transparent or of no size)
SHOWN_ERRORS = """[...document.querySelectorAll('body *')]
  .filter(e => e.childElementCount === 0 && e.textContent.trim() === 'Error' && e.getBoundingClientRect().width > 0)
  .filter(e => { for (let n = e; n; n = n.parentElement) { const s = getComputedStyle(n);
    if (s.opacity === '0' || s.visibility === 'hidden' || s.display === 'none') return false; } return true; })
  .length"""


def test_failed_actions_leave_no_error_marks(sized: tuple[str, Page], tmp_path: Path):
    """Issue 32.7: an error is a message that goes away; no red "Error" stays on the page, and the button is
    ready again."""
    size, page = sized
    page.click("#generate")  # no prompt
    toast = page.locator("[data-testid='toast-body']")
    toast.wait_for()
    assert "The prompt is empty" in toast.inner_text()
    page.wait_for_function("!document.querySelector('#generate').disabled")
    assert page.inner_text("#generate").strip() == "Generate" and markdown(page, "gen-status") == ""
    page.get_by_role("tab", name="Edit").click()
    page.get_by_text("a pink circle above a large blue square").click()
    page.wait_for_function(
        "document.querySelector('#edit-prompt textarea').value.includes('pink circle')"
    )
    page.click("#complete")  # nothing painted
    wait_for_text(page, "body", "Paint over the area to redraw (it reaches")
    page.wait_for_function("!document.querySelector('#complete').disabled")
    assert page.inner_text("#complete").strip() == "Complete"
    screenshot(page, tmp_path, f"failed-{size}")
    toast.first.wait_for(state="detached", timeout=15_000)  # the messages go away by themselves
    assert page.evaluate(SHOWN_ERRORS) == 0


def test_prompt_and_complete_are_beside_the_editor(sized: tuple[str, Page], tmp_path: Path):
    """Issue 32.3 and 8: with an image in the editor, its prompt and Complete are on the first screen (beside
    the editor on a desktop, right under it on a phone); the image is shown at 100%; the completions come into
    view when Complete is pressed."""
    size, page = sized
    page.get_by_role("tab", name="Edit").click()
    page.get_by_text("a pink circle above a large blue square").click()
    wait_for_text(page, "#edit-status", "Paint over the area")
    assert page.inner_text("#editor .zoom-number") == "100%"  # 256 px: the model's 64 px at 4x
    height = page.viewport_size["height"]
    editor, prompt, button = (
        page.locator(s).bounding_box() for s in ("#editor", "#edit-prompt", "#complete")
    )
    assert (
        0 <= editor["y"] and button["y"] + button["height"] <= height
    )  # on one screen, scrolled to by the pick
    if size == "desktop":
        assert (
            prompt["x"] >= editor["x"] + editor["width"]
            and button["y"] < editor["y"] + editor["height"]
        )
    else:
        assert editor["y"] + editor["height"] <= prompt["y"] < button["y"]
    screenshot(page, tmp_path, f"edit-first-screen-{size}")
    paint(page, (0.6, 0.55), (0.9, 0.9))
    wait_for_text(page, "#edit-status", "Redrawing token rows")
    page.wait_for_function("document.querySelector('#region-preview img')?.complete")
    shown = [
        page.locator(s).first.bounding_box() for s in ("#region-preview img", "#example-scenes img")
    ]
    assert [(b["width"], b["height"]) for b in shown] == [
        (256, 256),
        (64, 64),
    ]  # the model's 64 px, 4x and 1x
    page.click("#complete")
    page.wait_for_function("document.querySelector('#complete').innerText.includes('Completing')")
    wait_for_text(page, "#complete-status", "The best 4 of 16 candidates in")
    page.wait_for_function("!document.querySelector('#complete').disabled")
    results = page.locator("#edit-results").bounding_box()
    assert 0 <= results["y"] < height  # scrolled into view
    assert page.locator("#edit-gallery img[alt*='score']").count() == 4
    screenshot(page, tmp_path, README_SCREENSHOT["edit"][size], keep=True)


def test_non_square_upload_shows_the_crop_box(sized: tuple[str, Page], tmp_path: Path):
    """Issue 32.8: for a non-square upload, the region preview frames the central square the model keeps, at
    4x its 64 px, with the parts cut off dimmed beside it; the note says so."""
    size, page = sized
    upload = tmp_path / "wide.png"
    wide = Image.new("RGB", (300, 180), (30, 200, 30))
    wide.paste((220, 30, 30), (0, 0, 60, 180))  # a red band on the left, cut off by the crop
    wide.save(upload)
    page.get_by_role("tab", name="Edit").click()
    page.locator("#editor canvas").first.wait_for()
    page.locator("#editor input[type=file]").set_input_files(str(upload))
    wait_for_text(
        page,
        "#image-status",
        "cropped to its central 180x180 px square (framed in Region to redraw",
    )
    preview = page.locator("#region-preview img")
    page.wait_for_function("document.querySelector('#region-preview img')?.complete")
    natural = page.evaluate(
        "[document.querySelector('#region-preview img').naturalWidth,"
        " document.querySelector('#region-preview img').naturalHeight]"
    )
    box = preview.bounding_box()
    assert natural == [320, 256] and (box["width"], box["height"]) == (
        320,
        256,
    )  # 32 px cut off a side, 1:1
    screenshot(page, tmp_path, f"crop-box-{size}")
