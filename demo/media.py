"""Picture helpers shared by the app and the API: crisp enlargements, PNG bytes, editor masks, region outlines.

No model code here: the model's own conversions (resizing any image to its resolution,
snapping a mask to a token rectangle) live in `dalle_core.dalle.Dalle`.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from dalle_core.checkpoint import write_bytes
from dalle_core.images import enlarge

DISPLAY_SIZE = (
    256  # the app shows a model's images at most this large, with square pixels (`shown_size`)
)
REGION_TINT = (255, 0, 200)  # the colour of the outlined region in previews
CROP_MARGIN = (
    DISPLAY_SIZE // 8
)  # how much of the cut-off parts of a non-square image `crop_box` shows a side
MAX_IMAGE_PIXELS = 4096 * 4096  # the largest upload the server decodes (app and API): 64 MB as RGBA


def shown_size(image_size: int) -> int:
    """The side at which the app shows a model's images: the largest whole multiple of `image_size` up to
    `DISPLAY_SIZE` (64 px at 4x, 96 px at 2x), so that every model pixel is a square of screen pixels and
    an image shown can go back to the model pixel for pixel (`native_pixels`)."""
    return image_size * max(1, DISPLAY_SIZE // image_size)


def refuse_huge_images() -> None:
    """Make Pillow refuse, process-wide, to open images of more than `MAX_IMAGE_PIXELS` (decompression bombs).

    Gradio decodes the app's uploads with Pillow before any code of ours sees them, so Pillow's own
    limit is the one that holds there: it raises `DecompressionBombError` above twice its
    `MAX_IMAGE_PIXELS` (and only warns above it). Its default let a 12 kB PNG of 10000x10000 px through, which
    took 2.8 GB of memory to decode.
    """
    Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS // 2


def png_bytes(image: Image.Image) -> bytes:
    """The image encoded as PNG."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


class PngFolder:
    """PNG files in a folder, named by a hash of their bytes, each written once and atomically.

    Gradio saves an image returned as an array or PIL image by rewriting a file named by its
    content, in place, every time it is returned; a browser still downloading the previous copy
    then gets a truncated file. The editor's events repeat the same images, so the app returns
    those as paths of files from here instead, which never change once written.
    """

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)

    def save(self, image: Image.Image) -> str:
        """The path of a PNG file of the image."""
        data = png_bytes(image)
        path = self.folder / f"{hashlib.sha256(data).hexdigest()[:32]}.png"
        if not path.exists():
            write_bytes(path, data)
        return str(path)


def native_pixels(image: np.ndarray, size: int) -> np.ndarray | None:
    """The (size, size, 3) image that `image` is an exact nearest-neighbour enlargement of, or None.

    Such images (the app's and the API's own results, the example scenes) go back to the model
    pixel for pixel, where resizing them would blur them a little.
    """
    h, w = image.shape[:2]
    if image.ndim != 3 or h != w or h % size or image.shape[2] not in (3, 4):
        return None
    if image.shape[2] == 4:
        if (image[..., 3] != 255).any():
            return None
        image = image[..., :3]
    k = h // size
    small = image[::k, ::k]
    return (
        np.ascontiguousarray(small)
        if np.array_equal(small.repeat(k, 0).repeat(k, 1), image)
        else None
    )


def center_square(array: np.ndarray) -> np.ndarray:
    """The central square of an image or mask: the part the model keeps of a non-square image."""
    h, w = array.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    return array[top : top + side, left : left + side]


def painted_mask(editor_value: dict | None) -> np.ndarray | None:
    """Where the user painted in a `gr.ImageEditor` value: the union of its layers' alpha > 0.

    None when there is no layer; an all-False array when the layers are empty.
    """
    layers = (editor_value or {}).get("layers") or []
    mask = None
    for layer in layers:
        alpha = np.asarray(layer)[..., 3] > 0
        mask = alpha if mask is None else mask | alpha
    return mask


def outline_region(image: np.ndarray, top_left: tuple[int, int], size: int) -> Image.Image:
    """The image enlarged to `size`, with the rectangle from pixel `top_left` (y, x) to the bottom-right corner
    outlined."""
    scale = size / image.shape[0]
    y, x = round(top_left[0] * scale), round(top_left[1] * scale)
    base = enlarge(image, size).convert("RGBA")
    overlay = Image.new("RGBA", base.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    draw.rectangle((x, y, size - 1, size - 1), fill=(*REGION_TINT, 70))
    draw.rectangle((x, y, size - 1, size - 1), outline=(*REGION_TINT, 255), width=3)
    return Image.alpha_composite(base, overlay).convert("RGB")


def crop_box(upload: np.ndarray, square: Image.Image, margin: int = CROP_MARGIN) -> Image.Image:
    """Where the model's square comes from in a non-square upload: `square` (the upload's central square as the
    model sees it, enlarged, e.g. by `outline_region`) framed, with up to `margin` px of the parts cut off on
    either side dimmed, at the square's scale. Transparent pixels are shown on white, as the model sees them.
    Only what is shown is resampled, so a 1x4096 px upload costs no more than a square one."""
    h, w = upload.shape[:2]
    size = square.size[0]
    side = min(h, w)
    scale = size / side
    left, top = (w - side) / 2, (h - side) / 2  # the square, in the upload's pixels
    # the bands shown beside the square, in output pixels, and the part of the upload they and the square show
    bands = [
        min(round(edge * scale), margin) for edge in (left, top, left, top)
    ]  # left, top, right, bottom
    source = (
        left - bands[0] / scale,
        top - bands[1] / scale,
        left + side + bands[2] / scale,
        top + side + bands[3] / scale,
    )
    picture = Image.fromarray(upload)
    if picture.mode != "RGB":
        picture = Image.alpha_composite(
            Image.new("RGBA", picture.size, (255, 255, 255, 255)), picture.convert("RGBA")
        )
    shown = picture.convert("RGB").resize(
        (bands[0] + size + bands[2], bands[1] + size + bands[3]),
        Image.Resampling.BILINEAR,
        box=source,
    )
    shown = Image.blend(
        shown, Image.new("RGB", shown.size, (128, 128, 128)), 0.6
    )  # dim what is cut off
    x, y = bands[0], bands[1]
    shown.paste(square.convert("RGB"), (x, y))
    draw = ImageDraw.Draw(shown)  # the frame: black and white, to show on any picture
    draw.rectangle((x - 2, y - 2, x + size + 1, y + size + 1), outline=(0, 0, 0))
    draw.rectangle((x - 1, y - 1, x + size, y + size), outline=(255, 255, 255))
    return shown
