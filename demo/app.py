"""The Gradio app: prompts to ranked images, and redrawing the bottom-right part of an image.

`build_demo(model)` lays out the page and wires its events to `Handlers`, whose methods turn
widget values into calls of the `Dalle` facade and its results into widget updates. Nothing
here knows how the model works; `demo.server` serves this app beside the OpenAI-style API.
"""

from __future__ import annotations

import random
import re
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import gradio as gr
import numpy as np
from gradio.components.image_editor import EditorData, EditorValue
from PIL import Image

from dalle_core import DEFAULT_CHECKPOINT, DEFAULTS, MAX_CANDIDATES, Progress
from dalle_core.images import enlarge
from dalle_core.layouts import as_top_half, completed_region

from .examples import prompts_for, puzzles, scenes, translations
from .media import (
    DISPLAY_SIZE,
    MAX_IMAGE_PIXELS,
    PngFolder,
    center_square,
    crop_box,
    native_pixels,
    outline_region,
    painted_mask,
    shown_size,
)
from .scheduler import Scheduler, Ticket

MODEL_CARD = DEFAULT_CHECKPOINT.parent / "MODEL_CARD.md"
PAINTED, SLIDERS = "painted mask", "sliders"
SEED = (
    6  # the seed box's place in `sampling_controls()`: the handlers show the seed they used there
)
EDITOR_HEIGHT = (
    DISPLAY_SIZE + 62
)  # the editor fits an image into its canvas less 30 px a side: 256 px fit at 100%
BRUSH_COLOR = "#ff00c8"
MODEL_CONCURRENCY = 16  # app runs at the scheduler at once
# Gradio copies every image it serves into its cache folder: every hour, it deletes this app's copies that are a
# day old (and all of them when the server shuts down), so a server left running does not fill the disk
CACHE_EXPIRY = (3600, 86400)
GENERATE, COMPLETE = "Generate", "Complete"
GENERATING, COMPLETING = "Generating…", "Completing…"
# Gradio 6 takes CSS in launch() / mount_gradio_app(): `demo.server` passes this on. The model's 64 px images
# are shown at whole multiples of their size (--tile is a result's side plus its 1 px border), in as many
# columns as the width holds; the streamed previews of all candidates at half that, without captions.
CSS = """
.crisp img, .crisp canvas { image-rendering: pixelated; }
.results { --tile: 258px; }
.results .grid-wrap { min-height: 0 !important; max-height: none !important; }
.results .grid-container { grid-template-columns: repeat(auto-fill, var(--tile)) !important;
  grid-template-rows: none !important; grid-auto-rows: var(--tile) !important; justify-content: start;
  padding-top: 30px; /* below the gallery's label */ }
.results .grid-container:has(img[alt^="candidate"]) { --tile: 130px; }
.results .grid-container:has(img[alt^="candidate"]) .caption-label { display: none; }
.results .caption-label { max-width: calc(100% - 8px); }
@media (max-width: 600px) {
  .results { --tile: 130px; }
  .results .grid-container:has(img[alt^="candidate"]) { --tile: 66px; }
}
/* the enlarged view of one result: opaque, over a hidden grid, at 4x (8x where there is room) */
.results .gallery-container:has(> .preview) { min-height: 400px; }
.results .gallery-container:has(> .preview) > .grid-wrap { visibility: hidden; }
.results .preview { backdrop-filter: none; }
.results .preview::before { opacity: 1; }
.results .media-button img { width: 256px; height: 256px; margin: auto; }
@media (min-width: 900px) and (min-height: 800px) {
  .results .gallery-container:has(> .preview) { min-height: 660px; }
  .results .media-button img { width: 512px; height: 512px; }
}
#region-preview .image-container { padding-top: 30px; }  /* below its label */
#region-preview img { width: auto; height: auto; max-width: 100%; object-fit: none; margin: auto; }
#example-scenes table { width: 100%; table-layout: fixed; }  /* on a phone too: headers and captions wrap */
#example-scenes th, #example-scenes th * { white-space: normal !important; }
#example-scenes img { width: 64px; height: 64px; image-rendering: pixelated; }
.note { font-size: var(--text-sm); }
"""


def scroll_to(elem_id: str, block: str) -> str:
    """Browser code for an event that scrolls the element into view (`block` as in `scrollIntoView`)."""
    return (
        f"() => {{ document.getElementById({elem_id!r})?.scrollIntoView({{block: {block!r}, behavior: 'smooth'}});"
        " return []; }"
    )


# on Complete, bring the status line and the completions into view (on a phone they are further down); with an
# image sent to the editor or an example scene picked, the editor, its prompt and Complete (on one screen)
SHOW_EDIT_RESULTS, SHOW_EDITOR = (
    scroll_to("edit-results", "nearest"),
    scroll_to("edit-intro", "start"),
)


ABOUT = """
**How it works.** Three small networks, trained from scratch on a world of flat coloured shapes:

1. a **discrete VAE** turns a {size}x{size} image into a {grid}x{grid} grid of tokens (codes from a
   learned codebook), and tokens back into pixels;
2. a **transformer** reads the prompt's tokens, then writes the image's tokens one at a time, left to
   right and top to bottom, like a language model writing a sentence;
3. a **CLIP-style scorer**, trained to tell matching image-caption pairs from mismatched ones, ranks the
   sampled candidates: the best come first, captioned with their score (which only orders them).

Each result is then checked by the shapes world's judge, which reads the shapes, colours, sizes and positions
off the pixels: ✓ when they are what the prompt names, ✗ when not.

**Settings.** More *candidates* give the scorer more to choose from (and take longer). *Temperature*,
*top-k* and *top-p* make sampling bolder or safer; *guidance* (classifier-free) pushes the images
towards the prompt. The same *seed* and settings give the same images.

**Editing** keeps the tokens above and to the left of a rectangle and lets the transformer rewrite the
rest. Because it writes in reading order, the rectangle must reach the bottom-right corner: a painted
area is grown to the smallest such rectangle of whole {cell}x{cell} px cells.

The model only knows the shapes world's words (colours, shapes, sizes, counts, positions, backgrounds);
words it never saw have no effect, and are pointed out under the prompt with the words it knows. The same
server answers OpenAI's Images API under `/v1` (see `demo/README.md`).
"""


def build_demo(scheduler: Scheduler, max_candidates: int = MAX_CANDIDATES) -> gr.Blocks:
    """The app's page, sampling through `scheduler` and calling its model for the rest; `max_candidates` caps the
    candidates slider."""
    model = scheduler.model
    if not 1 <= max_candidates <= MAX_CANDIDATES:
        raise ValueError(
            f"max_candidates must be between 1 and {MAX_CANDIDATES}, got {max_candidates}"
        )
    h = Handlers(scheduler)
    model_lock = {
        "concurrency_id": "model",
        "concurrency_limit": MODEL_CONCURRENCY,
    }  # app runs at the scheduler at once (it samples them together); more wait in Gradio's queue
    quiet = {"show_progress": "hidden"}  # no progress overlays: a status line says what is going on
    with gr.Blocks(
        title="Laptop DALL·E", analytics_enabled=False, delete_cache=CACHE_EXPIRY
    ) as demo:
        gr.Markdown(
            f"# Laptop DALL·E\nA small text-to-image model that runs on a laptop CPU: it draws "
            f"{model.image_size}x{model.image_size} px scenes of flat shapes from a description, "
            "and redraws the bottom-right part of any image."
        )
        with gr.Tabs() as tabs:
            with gr.Tab("Generate", id="generate"):
                prompt = gr.Textbox(
                    label="Prompt",
                    placeholder="a yellow triangle above a green diamond",
                    max_lines=2,
                    elem_id="prompt",
                )
                prompt_note = gr.Markdown(elem_id="prompt-note", elem_classes=["note"])
                gr.Examples(
                    prompts_for(lambda p: not model.unknown_words(p)),
                    inputs=prompt,
                    label="Example prompts",
                )
                gen_settings = sampling_controls(max_candidates)
                generate_button = gr.Button(GENERATE, variant="primary", elem_id="generate")
                gen_status = gr.Markdown(elem_id="gen-status")
                gallery = result_gallery("Results, best first", "gallery")
                results = gr.State(
                    []
                )  # the gallery's images at the model's size (uint8 arrays), best first
                selected = gr.State(None)  # the index of the gallery image the user clicked last
                to_editor = gr.Button(
                    "Edit the selected image (the best if none is selected)", elem_id="to-editor"
                )
            with gr.Tab("Edit", id="edit"):
                gr.Markdown(
                    "**Paint over the lower-right part** of an image to redraw it, describe the whole "
                    "picture, and press Complete.",
                    elem_id="edit-intro",
                )
                with gr.Row(equal_height=False):
                    with gr.Column(min_width=300):
                        editor = explain_unreadable_uploads(
                            gr.ImageEditor(
                                type="numpy",
                                image_mode="RGBA",
                                format="png",
                                label="Image: paint what to redraw",
                                sources=("upload", "clipboard"),
                                transforms=(),
                                layers=False,
                                canvas_size=(DISPLAY_SIZE, DISPLAY_SIZE),
                                height=EDITOR_HEIGHT,
                                elem_id="editor",
                                brush=gr.Brush(
                                    default_size="auto",
                                    colors=[(BRUSH_COLOR, 0.6)],
                                    color_mode="fixed",
                                ),
                                elem_classes=["crisp"],
                            )
                        )
                        image_status = gr.Markdown(elem_id="image-status", elem_classes=["note"])
                    with gr.Column(min_width=300):
                        edit_prompt = gr.Textbox(
                            label="Prompt for the whole image", max_lines=2, elem_id="edit-prompt"
                        )
                        edit_note = gr.Markdown(elem_id="edit-prompt-note", elem_classes=["note"])
                        complete_button = gr.Button(COMPLETE, variant="primary", elem_id="complete")
                        transforms = [t for t in translations() if h.reads(t)]
                        with gr.Group(visible=bool(transforms) and h.holds("pair")):
                            transform = gr.Dropdown(
                                transforms,
                                value=transforms[0] if transforms else None,
                                label="Or ask for a transform of the image",
                                elem_id="transform",
                            )
                            top_half = gr.Button(
                                "Put the image in the top half", elem_id="top-half", size="sm"
                            )
                    with gr.Column(min_width=300):
                        region_preview = gr.Image(
                            label="Region to redraw",
                            interactive=False,
                            format="png",
                            elem_id="region-preview",
                            elem_classes=["crisp"],
                            buttons=[],
                        )
                        edit_status = gr.Markdown(elem_id="edit-status", elem_classes=["note"])
                        mode = gr.Radio(
                            [PAINTED, SLIDERS], value=PAINTED, label="Region from", elem_id="mode"
                        )
                        with gr.Row():
                            last = model.grid - 1
                            row = gr.Slider(
                                0,
                                last,
                                value=model.grid // 2,
                                step=1,
                                label="Start row",
                                elem_id="row",
                            )
                            col = gr.Slider(
                                0,
                                last,
                                value=model.grid // 2,
                                step=1,
                                label="Start column",
                                elem_id="col",
                            )
                with gr.Column(elem_id="edit-results"):
                    complete_status = gr.Markdown(elem_id="complete-status")
                    edit_gallery = result_gallery("Completions, best first", "edit-gallery")
                    keep_editing = gr.Button(
                        "Keep editing the selected completion", elem_id="keep-editing"
                    )
                edit_results, edit_selected = gr.State([]), gr.State(None)
                found = [p for p in puzzles(model.image_size, model.grid) if h.reads(p[2])]
                if found:  # a model whose grid holds them and who knows their words
                    shown = gr.Examples(
                        [
                            [h.picture(image), text, SLIDERS, *region]
                            for _, image, text, region in found
                        ],
                        inputs=[editor, edit_prompt, mode, row, col],
                        example_labels=[label for label, *_ in found],
                        label="Puzzles: a click completes one",
                        elem_id="puzzles",
                    )
                    shown.load_input_event.then(None, js=press("complete"))
                gr.Examples(
                    [[h.picture(image), caption] for image, caption in scenes(model.image_size)],
                    inputs=[editor, edit_prompt],
                    label="Example scenes",
                    elem_id="example-scenes",
                ).dataset.click(None, js=SHOW_EDITOR)
                edit_settings = sampling_controls(max_candidates)
        with gr.Accordion("About this model", open=False):
            gr.Markdown(
                ABOUT.format(
                    size=model.image_size, grid=model.grid, cell=model.image_size // model.grid
                )
            )
            gr.Markdown(model_card_summary(MODEL_CARD, model.checkpoint))

        prompt.change(
            h.prompt_note, prompt, prompt_note, queue=False, api_name="check_prompt", **quiet
        )
        edit_prompt.change(
            h.prompt_note, edit_prompt, edit_note, queue=False, api_visibility="private", **quiet
        )

        gen_outputs = [gallery, gen_status, gen_settings[SEED], results, selected]
        run_on_click(
            generate_button,
            gen_status,
            (GENERATE, GENERATING),
            h.generate,
            [prompt, *gen_settings],
            gen_outputs,
            "generate",
            model_lock,
        )
        prompt.submit(None, js=press("generate"))
        gallery.select(h.select, None, selected, queue=False, api_visibility="private")
        send_outputs = [editor, edit_prompt, tabs]
        to_editor.click(
            h.send_to_editor,
            [results, selected, prompt],
            send_outputs,
            api_visibility="private",
            **quiet,
        ).success(None, js=SHOW_EDITOR)

        # The editor fires `input` and/or `upload` for uploads, strokes and values set by the app. Nothing
        # here writes to the editor in answer: an update of its value makes it fire `upload` again.
        region_outputs = [region_preview, row, col, edit_status, image_status]
        gr.on(
            [editor.input, editor.upload],
            h.preview_region,
            [editor, mode, row, col],
            region_outputs,
            api_name="preview_region",
            trigger_mode="always_last",
            **quiet,
        )
        mode.change(
            h.preview_region,
            [editor, mode, row, col],
            region_outputs,
            api_visibility="private",
            **quiet,
        )
        gr.on(
            [row.input, col.input],
            h.slide,
            [editor, row, col],
            [*region_outputs, mode],
            api_visibility="private",
            **quiet,
        )
        edit_outputs = [
            edit_gallery,
            complete_status,
            edit_settings[SEED],
            edit_results,
            edit_selected,
        ]
        run_on_click(
            complete_button,
            complete_status,
            (COMPLETE, COMPLETING),
            h.complete,
            [editor, edit_prompt, mode, row, col, *edit_settings],
            edit_outputs,
            "complete",
            model_lock,
            js=SHOW_EDIT_RESULTS,
        )
        top_half.click(
            h.top_half,
            [editor, transform],
            [editor, edit_prompt, mode, row, col],
            api_visibility="private",
            **quiet,
        )
        edit_prompt.submit(None, js=press("complete"))
        edit_gallery.select(h.select, None, edit_selected, queue=False, api_visibility="private")
        keep_editing.click(
            h.send_to_editor,
            [edit_results, edit_selected, edit_prompt],
            send_outputs,
            api_visibility="private",
            **quiet,
        ).success(None, js=SHOW_EDITOR)
    return demo


def run_on_click(
    button: gr.Button,
    status: gr.Markdown,
    labels: tuple[str, str],
    fn: Callable,
    inputs: list,
    outputs: list,
    api_name: str,
    lock: dict,
    js: str | None = None,
) -> None:
    """Wire `button` to the model call `fn`. The button, disabled and labelled `labels[1]`, shows that the model
    is at work (and takes no second click) until the run ends, however it ends (Gradio 6.31 runs a `.then` only
    after a success); then it is enabled with its own label `labels[0]`, and after an error (whose message says
    why) the status line is cleared of the run's progress."""
    label, working = labels
    quiet = {"queue": False, "api_visibility": "private", "show_progress": "hidden"}
    busy = button.click(
        lambda: (gr.Button(working, interactive=False), "Waiting for the model…"),
        None,
        [button, status],
        js=js,
        **quiet,
    )
    run = busy.then(fn, inputs, outputs, api_name=api_name, show_progress="hidden", **lock)
    run.then(lambda: gr.Button(label, interactive=True), None, button, **quiet)
    run.failure(lambda: (gr.Button(label, interactive=True), ""), None, [button, status], **quiet)


def press(elem_id: str) -> str:
    """Browser code for an event that clicks a button (which does nothing while the button is disabled)."""
    return f"() => {{ document.getElementById({elem_id!r})?.click(); return []; }}"


def sampling_controls(max_candidates: int) -> list[gr.components.Component]:
    """Sliders for the sampling settings, in the order `Handlers.generate` takes them."""
    with gr.Accordion("Sampling settings", open=False):
        with gr.Row():
            candidates = gr.Slider(
                1,
                max_candidates,
                value=min(DEFAULTS.candidates, max_candidates),
                step=1,
                label="Candidates",
                info="how many images to sample; the scorer keeps the best",
            )
            show = gr.Slider(
                1,
                max_candidates,
                value=min(DEFAULTS.n, max_candidates),
                step=1,
                label="Images to show",
                info="the best ones (at most the candidates)",
            )
        with gr.Row():
            temperature = gr.Slider(
                0.1, 2.0, value=DEFAULTS.temperature, step=0.05, label="Temperature"
            )
            top_k = gr.Slider(0, 512, value=DEFAULTS.top_k, step=1, label="Top-k", info="0: off")
            top_p = gr.Slider(
                0.05, 1.0, value=DEFAULTS.top_p, step=0.01, label="Top-p", info="1: off"
            )
            guidance = gr.Slider(
                1.0, 10.0, value=DEFAULTS.guidance, step=0.25, label="Guidance", info="1: off"
            )
        with gr.Row():
            seed = gr.Number(DEFAULTS.seed, precision=0, minimum=0, label="Seed")
            random_seed = gr.Checkbox(
                True, label="Random seed", info="pick a new seed each time (shown here after)"
            )
    return [candidates, show, temperature, top_k, top_p, guidance, seed, random_seed]


def explain_unreadable_uploads(editor: gr.ImageEditor) -> gr.ImageEditor:
    """The editor, telling the user why an upload cannot be used (Gradio's own message names no cause).

    It wraps the instance's `preprocess`, where Gradio decodes uploads with Pillow: a subclass would
    do the same, but Gradio writes a `.pyi` file beside the module of every component subclass.
    """
    preprocess = editor.preprocess

    def checked(payload: EditorData | None) -> EditorValue | None:
        try:
            return preprocess(payload)
        except Image.DecompressionBombError:
            raise _error(
                f"The image is too large: at most {MAX_IMAGE_PIXELS} pixels (4096x4096)."
            ) from None
        except (OSError, SyntaxError, ValueError):  # not an image, truncated, damaged
            raise _error(
                "The upload is not an image this app can read, or it is damaged: use a PNG, JPEG, GIF or "
                "WebP file."
            ) from None

    editor.preprocess = checked
    return editor


def result_gallery(label: str, elem_id: str) -> gr.Gallery:
    """A gallery of crisp, downloadable PNGs, as tall as its rows (`CSS` sets the columns)."""
    return gr.Gallery(
        label=label,
        format="png",
        object_fit="contain",
        height="auto",
        buttons=["download", "fullscreen"],
        elem_id=elem_id,
        elem_classes=["crisp", "results"],
        interactive=False,
    )


def model_card_summary(card: Path, checkpoint: Path) -> str:
    """Markdown for the About box: the summary section of the model card, or a note that there is none yet."""
    heading = "### Model card\n"
    if not card.exists():
        return (
            heading
            + f"*The model card's numbers will appear here once `{card.parent.name}/{card.name}` is "
            "written.*"
        )
    text = card.read_text(encoding="utf-8")
    section = re.search(r"^#+[^\n]*summary[^\n]*\n(.*?)(?=^#|\Z)", text, flags=re.I | re.M | re.S)
    if section:
        summary = section.group(1).strip()
    else:  # the first paragraph after the title
        paragraphs = [
            p.strip()
            for p in re.split(r"\n\s*\n", text)
            if p.strip() and not p.lstrip().startswith("#")
        ]
        summary = paragraphs[0] if paragraphs else ""
    note = ""
    if Path(checkpoint).resolve() != DEFAULT_CHECKPOINT.resolve():
        note = f"\n\n*These numbers describe the shipped checkpoint; this app runs `{checkpoint}`.*"
    return heading + (summary or "*The model card has no summary yet.*") + note


class Handlers:
    """The app's callbacks. Each takes widget values and returns (or yields) widget updates."""

    def __init__(self, scheduler: Scheduler):
        self.scheduler, self.model = scheduler, scheduler.model
        self.shown = shown_size(self.model.image_size)  # the side of the images shown
        self._folder = tempfile.TemporaryDirectory(prefix="dalle-demo-")  # removed with this object
        self.pngs = PngFolder(self._folder.name)

    def picture(self, image: np.ndarray) -> str:
        """A model-size image as the app shows it (enlarged with square pixels), as a file's path."""
        return self.pngs.save(enlarge(image, self.shown))

    def reads(self, text: str) -> bool:
        """Whether the model knows every word of a text (an example's, say)."""
        return not self.model.unknown_words(text)

    def holds(self, kind: str) -> bool:
        """Whether a layout's panels fall on the model's token grid."""
        return completed_region(kind, self.model.grid) is not None

    def top_half(self, editor: dict | None, transform: str) -> tuple:
        """The editor's image moved into the top half of a pair to complete with `transform` ("the same
        mirrored on the bottom"): the new image, that prompt, and the bottom half as the region."""
        background = _background(editor)
        if background is None:
            raise _error(
                "There is no image to transform: upload one, pick an example, or generate one."
            )
        image = self.model.prepare_image(self._pixels(background))
        region = completed_region("pair", self.model.grid)
        value = {"background": self.picture(as_top_half(image)), "layers": [], "composite": None}
        return value, transform, SLIDERS, *region

    def prompt_note(self, prompt: str) -> str:
        """The one note about a prompt, shown under it as it is typed (empty if there is nothing to say): its
        words the model never saw in training, with the words it knows, and what it reads of a long prompt."""
        prompt = prompt or ""
        try:
            prompt.encode("utf-8")
        except UnicodeEncodeError:  # the facade refuses it with a clear message when it is used
            return ""
        lines = []
        unknown = self.model.unknown_words(prompt)
        if unknown:
            known = "; ".join(
                f"*{group}* {', '.join(words)}" for group, words in self.model.vocabulary.items()
            )
            lines.append(
                "⚠️ Words the model never saw in training (they have no effect): "
                + ", ".join(f"**{_shorten(w)}**" for w in unknown[:20])
                + f". It knows only these: {known}."
            )
        kept = self.model.kept_prompt(prompt) if prompt.strip() else None
        if kept is not None:
            lines.append(
                f"✂️ The prompt is longer than the model reads: it reads only “{_shorten(kept, 300)}”, and "
                "the rest has no effect."
            )
        return "  \n".join(lines)

    def generate(
        self,
        prompt: str,
        candidates: float,
        show: float,
        temperature: float,
        top_k: float,
        top_p: float,
        guidance: float,
        seed: float | None,
        random_seed: bool,
    ) -> Iterator[tuple]:
        """Stream previews of all candidates, then the best ones: (gallery, status, seed, results, selected)."""
        settings = self._settings(
            candidates, show, temperature, top_k, top_p, guidance, seed, random_seed
        )
        stream = _user_errors(lambda: self.scheduler.generate_stream(prompt, **settings))
        yield from self._show(stream, settings, prompt)

    def complete(
        self,
        editor: dict | None,
        prompt: str,
        mode: str,
        row: float,
        col: float,
        candidates: float,
        show: float,
        temperature: float,
        top_k: float,
        top_p: float,
        guidance: float,
        seed: float | None,
        random_seed: bool,
    ) -> Iterator[tuple]:
        """Stream completions of the editor's image in the chosen region, like `generate`."""
        background = _background(editor)
        if background is None:
            raise _error(
                "There is no image to edit: upload one, pick an example scene, or send one from the "
                "Generate tab."
            )
        region = _user_errors(lambda: self._region(editor, mode, row, col))
        settings = self._settings(
            candidates, show, temperature, top_k, top_p, guidance, seed, random_seed
        )
        image = self._pixels(background)
        stream = _user_errors(
            lambda: self.scheduler.complete_stream(image, prompt, region=region, **settings)
        )
        yield from self._show(stream, settings, prompt)

    def select(self, event: gr.SelectData) -> int:
        """The index of the gallery image just clicked."""
        return event.index

    def send_to_editor(self, results: list[np.ndarray], selected: int | None, prompt: str) -> tuple:
        """The selected result (or the best) into the editor and its prompt into the edit prompt; show the Edit tab."""
        if not results:
            raise _error("There are no results to edit yet: generate some images first.")
        image = results[selected if selected is not None and selected < len(results) else 0]
        return (
            {"background": self.picture(image), "layers": [], "composite": None},
            prompt,
            gr.Tabs(selected="edit"),
        )

    def slide(self, editor: dict | None, row: float, col: float) -> tuple:
        """A slider moved: switch to the sliders and preview their region."""
        return *self.preview_region(editor, SLIDERS, row, col), SLIDERS

    def preview_region(self, editor: dict | None, mode: str, row: float, col: float) -> tuple:
        """What the model sees of the editor's image with the region to redraw outlined, the sliders set to
        that region, a status line about it, and a note on how the image was converted (if it was)."""
        background = _background(editor)
        if background is None:
            return (
                None,
                gr.skip(),
                gr.skip(),
                "Upload an image, pick an example scene, or send one from Generate.",
                "",
            )
        pixels = self._pixels(background)
        note = "" if pixels is not background else self._conversion_note(background)
        image = self.model.prepare_image(pixels)
        try:
            r, c = self._region(editor, mode, row, col)
        except ValueError as e:
            return (
                self._preview(background, enlarge(image, self.shown)),
                gr.skip(),
                gr.skip(),
                str(e),
                note,
            )
        g = self.model.grid
        y, x = self.model.rectangle_pixels((r, c))
        status = (
            f"Redrawing token rows {r}-{g - 1} and columns {c}-{g - 1} of the {g}x{g} grid: the "
            f"{self.model.image_size - x}x{self.model.image_size - y} px rectangle in the bottom-right corner."
        )
        return (
            self._preview(background, outline_region(image, (y, x), self.shown)),
            r,
            c,
            status,
            note,
        )

    # ------------------------------------------------------------------ helpers

    def _region(self, editor: dict | None, mode: str, row: float, col: float) -> tuple[int, int]:
        """(row, col) of the rectangle to redraw: from the sliders, or snapped from the painted mask."""
        if mode == SLIDERS:
            return self.model.check_region((_whole(row, "start row"), _whole(col, "start column")))
        mask = painted_mask(editor)
        if mask is None or not mask.any():
            raise ValueError(
                "Paint over the area to redraw (it reaches the bottom-right corner), or choose "
                "'sliders' and set the start row and column."
            )
        return self.model.snap_mask(
            center_square(mask)
        )  # the model keeps the central square of an image

    def _pixels(self, background: np.ndarray) -> np.ndarray:
        """The model's own pixels for an enlarged model-size image (exact), else the image as it is."""
        native = native_pixels(background, self.model.image_size)
        return background if native is None else native

    def _settings(
        self,
        candidates: float,
        show: float,
        temperature: float,
        top_k: float,
        top_p: float,
        guidance: float,
        seed: float | None,
        random_seed: bool,
    ) -> dict:
        """Facade settings from the sliders: `show` is capped at `candidates`; a random seed if asked for."""
        candidates = _whole(candidates, "candidates")
        return {
            "n": min(_whole(show, "images to show"), candidates),
            "candidates": candidates,
            "temperature": temperature,
            "top_k": _whole(top_k, "top-k"),
            "top_p": top_p,
            "guidance": guidance,
            "seed": random.randrange(2**31) if random_seed else _whole(seed, "seed"),
        }

    def _show(self, stream: Ticket, settings: dict, prompt: str) -> Iterator[tuple]:
        """Gallery updates from a scheduled request, which is withdrawn if this generator is closed early."""
        try:
            yield from self._updates(stream, settings, prompt)
        finally:  # Gradio closes this generator when its client cancels or goes away: withdraw the request
            stream.close()

    def _updates(self, stream: Iterator[Progress], settings: dict, prompt: str) -> Iterator[tuple]:
        """Previews while sampling, then the ranked results, each checked against the prompt. The status line is
        the only progress shown (notes on the prompt are under it)."""
        seed = settings["seed"]
        for p in stream:
            if p.results is None:
                if not p.previews:  # a row the model did not decode
                    continue
                # native size (1/16 of the pixels to encode per row); the gallery scales them up crisply
                previews = [
                    (Image.fromarray(img), f"candidate {i + 1}") for i, img in enumerate(p.previews)
                ]
                yield (
                    previews,
                    f"Sampling row {p.rows_done} of {p.rows_total} for {settings['candidates']} candidates…",
                    seed,
                    [],
                    None,
                )
                continue
            checks = [self.model.judge(r.image, prompt) for r in p.results]
            gallery = [
                (enlarge(r.image, self.shown), f"#{i + 1}{_mark(check)} · score {r.score:.1f}")
                for i, (r, check) in enumerate(zip(p.results, checks, strict=True))
            ]
            lines = [
                f"The best {len(p.results)} of {settings['candidates']} candidates in {p.seconds:.1f} s "
                f"(seed {seed}).",
                *_explain(checks),
            ]
            yield gallery, "  \n".join(lines), seed, [r.image for r in p.results], None

    def _preview(self, upload: np.ndarray, square: Image.Image) -> str:
        """The region preview: what the model sees, and for a non-square upload, the cut-off parts around it."""
        h, w = upload.shape[:2]
        return self.pngs.save(square if h == w else crop_box(upload, square))

    def _conversion_note(self, image: np.ndarray) -> str:
        """What the model did to an image of another size than its own, for the user."""
        h, w = image.shape[:2]
        s = self.model.image_size
        if h == w:
            return f"Your {w}x{h} px image was scaled to {s}x{s} px, the model's resolution."
        side = min(h, w)
        return (
            f"Your {w}x{h} px image was cropped to its central {side}x{side} px square (framed in *Region to "
            f"redraw*; the dimmed parts are left out) and scaled to {s}x{s} px, the model's resolution."
        )


def _mark(check: tuple[bool, str] | None) -> str:
    """A result's caption mark: ✓ when it matches the prompt, ✗ when not, nothing when it cannot be checked."""
    return "" if check is None else " ✓" if check[0] else " ✗"


SCORE_NOTE = (
    "*Score*: how well the ranking model finds that an image fits the prompt; it puts the candidates "
    "in order, and only the order means something."
)


def _explain(checks: list[tuple[bool, str] | None]) -> list[str]:
    """Status lines on the results' checks (`Dalle.judge`, one per result, best first) and on their scores."""
    if any(check is None for check in checks):
        return [
            SCORE_NOTE
            + " (This prompt is not in the words and order the model was trained on, so the "
            "images cannot be checked against it.)"
        ]
    passed = sum(ok for ok, _ in checks)
    lines = [
        f"✓ {passed} of {len(checks)} match the prompt: the shapes, colours, sizes and positions read off "
        "the image are the ones it names."
    ]
    lines += [f"✗ #{i + 1}: {why}." for i, (ok, why) in enumerate(checks) if not ok]
    return [*lines, SCORE_NOTE]


def _shorten(text: str, most: int = 40) -> str:
    """The text, cut to `most` characters with an ellipsis if it is longer."""
    return text if len(text) <= most else text[: most - 1] + "…"


def _background(editor: dict | None) -> np.ndarray | None:
    return None if not editor else editor.get("background")


def _whole(value: float | None, name: str) -> int:
    """A slider's or number box's value as an int; gr.Error if it is not a whole number."""
    if (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and float(value).is_integer()
    ):
        return int(value)
    raise _error(f"{name} must be a whole number, got {value!r}")


T = TypeVar("T")


def _user_errors(call: Callable[[], T]) -> T:
    """Call `call()`, showing the facade's ValueErrors (bad input) to the user as an error message."""
    try:
        return call()
    except ValueError as e:
        raise _error(str(e)) from None


def _error(message: str) -> gr.Error:
    """An error message for the user: bad input, not a fault of the server (so no traceback in its log)."""
    return gr.Error(message[0].upper() + message[1:], print_exception=False)
