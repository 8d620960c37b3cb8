"""Small image helpers: tensors <-> arrays, crisp upscaling, captioned grids."""
from __future__ import annotations

import textwrap
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """Images in [0, 1] (B, 3, S, S) -> uint8 arrays (B, S, S, 3)."""
    return (images.float().clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()


def to_float(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 images (B, S, S, 3) or (B, 3, S, S) tensors -> float in [0, 1] (B, 3, S, S)."""
    t = torch.as_tensor(images)
    if t.shape[-1] == 3:
        t = t.permute(0, 3, 1, 2)
    return t.float() / 255.0


def upscale(image: np.ndarray, size: int) -> Image.Image:
    """A uint8 (S, S, 3) image enlarged to (size, size) with nearest-neighbour pixels."""
    return Image.fromarray(image).resize((size, size), Image.Resampling.NEAREST)


def grid(images: Sequence[np.ndarray], captions: Sequence[str] | None = None, cols: int = 8,
         scale: int = 3) -> Image.Image:
    """A grid of uint8 (S, S, 3) images, enlarged `scale` times, each with its caption below."""
    s = images[0].shape[0] * scale
    font = ImageFont.load_default()
    width = max(12, s // 6)
    lines = [textwrap.wrap(c, width)[:4] for c in captions] if captions else [[] for _ in images]
    text_h = 11 * max((len(x) for x in lines), default=0) + (4 if captions else 0)
    cols = min(cols, len(images))
    rows = (len(images) + cols - 1) // cols
    canvas = Image.new("RGB", (cols * (s + 4) + 4, rows * (s + text_h + 4) + 4), (250, 250, 250))
    draw = ImageDraw.Draw(canvas)
    for i, img in enumerate(images):
        x, y = 4 + (i % cols) * (s + 4), 4 + (i // cols) * (s + text_h + 4)
        canvas.paste(upscale(img, s), (x, y))
        for j, line in enumerate(lines[i]):
            draw.text((x, y + s + 2 + 11 * j), line, fill=(20, 20, 20), font=font)
    return canvas
