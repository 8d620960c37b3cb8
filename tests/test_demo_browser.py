"""The app in a real browser: Playwright driving Debian's Chromium against the app served on loopback.

Screenshots go to pytest's tmp dir; set DALLE_SCREENSHOT_DIR (e.g. assets/screenshots) to also keep
one of each tab there, for the README. The page must not fetch anything from outside this computer.
"""
from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest
from conftest import LiveServer
from PIL import Image
from playwright.sync_api import Browser, Page, sync_playwright

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
TIMEOUT_MS = 60_000
pytestmark = [
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no Chromium at {CHROMIUM}"),
    pytest.mark.filterwarnings("ignore:.*(no_silent_downcasting|copy keyword)"),  # Gradio's use of pandas
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser, demo_server: LiveServer) -> Iterator[Page]:
    """The app's page, freshly loaded; fails the test if the page requested anything not on loopback."""
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.set_default_timeout(TIMEOUT_MS)
    outside = []
    page.on("request", lambda r: outside.append(r.url)
            if urlparse(r.url).hostname not in ("127.0.0.1", None) and not r.url.startswith(("data:", "blob:"))
            else None)
    page.goto(demo_server.url)
    page.wait_for_selector("#prompt textarea")
    yield page
    page.close()
    assert not outside, f"the page fetched from outside: {outside}"


def screenshot(page: Page, tmp_path: Path, name: str, keep: bool = False) -> Path:
    """Save a full-page screenshot in tmp_path, and if `keep`, in $DALLE_SCREENSHOT_DIR (when set)."""
    path = tmp_path / f"{name}.png"
    page.evaluate("Promise.all([...document.images].map(image => image.decode().catch(() => null)))")
    page.screenshot(path=str(path), full_page=True)
    assert Image.open(path).size[0] >= 1000
    if keep and os.environ.get("DALLE_SCREENSHOT_DIR"):
        keep = Path(os.environ["DALLE_SCREENSHOT_DIR"])
        keep.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, keep / f"{name}.png")
    return path


def wait_for_text(page: Page, selector: str, text: str) -> None:
    page.wait_for_function("([s, t]) => (document.querySelector(s)?.innerText || '').includes(t)",
                           arg=[selector, text])


def set_slider(page: Page, elem_id: str, value: int) -> None:
    """Type a value into a slider's number box, as a user would."""
    box = page.locator(f"#{elem_id} input[type=number]")
    box.fill(str(value))
    box.press("Enter")


def paint(page: Page, start: tuple[float, float], end: tuple[float, float]) -> None:
    """Drag the mouse over the editor's image, between fractions of its size."""
    page.wait_for_function("!document.querySelector('#editor [data-testid=status-tracker]:not(.hide)')")
    canvas = page.locator("#editor canvas").first.bounding_box()
    # the image sits centred in the canvas area at its zoom; paint inside its lower-right part
    side = min(canvas["width"], canvas["height"]) * 0.8
    left, top = canvas["x"] + (canvas["width"] - side) / 2, canvas["y"] + (canvas["height"] - side) / 2
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
    page.wait_for_function("document.querySelector('#prompt textarea').value.includes('yellow triangle')")
    page.click("#generate")
    page.wait_for_selector("#gallery img[alt^='candidate']")  # previews while sampling (or the results)
    wait_for_text(page, "#gen-status", "The best 4 of 16 candidates in")
    images = page.locator("#gallery img[alt*='score']")
    assert images.count() == 4 and images.first.get_attribute("alt").startswith("#1 · score ")
    screenshot(page, tmp_path, "generate", keep=True)


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
    screenshot(page, tmp_path, "edit", keep=True)


def test_upload_any_image_and_use_sliders(page: Page, tmp_path: Path):
    upload = tmp_path / "photo.png"
    Image.new("RGBA", (300, 180), (30, 200, 30, 255)).save(upload)
    page.get_by_role("tab", name="Edit").click()
    page.locator("#editor canvas").first.wait_for()  # the editor is ready
    page.locator("#editor input[type=file]").set_input_files(str(upload))
    wait_for_text(page, "#image-status", "Your 300x180 px image was cropped to a square and scaled to 64x64 px")
    set_slider(page, "row", 2)
    wait_for_text(page, "#edit-status", "Redrawing token rows 2-7 and columns 4-7")
    assert page.locator("#mode input[value='sliders']").is_checked()  # moving a slider switches to them
    page.fill("#edit-prompt textarea", "a green square")
    page.click("#complete")
    wait_for_text(page, "#complete-status", "candidates in")
    assert page.locator("#edit-gallery img[alt*='score']").count() == 4
    screenshot(page, tmp_path, "edit-sliders")


def test_example_scene_fills_editor_and_prompt(page: Page):
    page.get_by_role("tab", name="Edit").click()
    page.get_by_text("a pink circle above a large blue square").click()
    page.wait_for_function("document.querySelector('#edit-prompt textarea').value.includes('pink circle')")
    page.click("#complete")  # nothing painted yet: a clear message
    toast = page.locator("[data-testid='toast-body']")
    toast.wait_for()
    assert "Paint over the area to redraw" in toast.inner_text()
