"""Images as the models see them: uint8 arrays (S, S, 3) <-> float tensors (B, 3, S, S) in [0, 1]."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image, ImageOps


def stack(images: Sequence[np.ndarray]) -> torch.Tensor:
    """uint8 arrays (S, S, 3) -> one uint8 tensor (B, 3, S, S)."""
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """Images in [0, 1] (B, 3, S, S) -> uint8 arrays (B, S, S, 3)."""
    return (images.float().clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()


def to_float(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 images (B, S, S, 3) or (B, 3, S, S) tensors -> float in [0, 1] (B, 3, S, S)."""
    t = (
        images if isinstance(images, torch.Tensor) else torch.from_numpy(np.array(images))
    )  # a copy: inputs may be read-only
    if t.shape[-1] == 3:
        t = t.permute(0, 3, 1, 2)
    return t.float() / 255.0


def enlarge(image: np.ndarray, size: int) -> Image.Image:
    """A uint8 (S, S, 3) image enlarged to (size, size) with nearest-neighbour pixels."""
    return Image.fromarray(image).resize((size, size), Image.Resampling.NEAREST)


def to_square(img: Image.Image, size: int) -> np.ndarray:
    """Any PIL image as RGB uint8 (size, size, 3): resized so its short side fits, centre-cropped."""
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        base = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(base, rgba)
    img = ImageOps.fit(img.convert("RGB"), (size, size), Image.Resampling.BICUBIC)
    return np.asarray(img, dtype=np.uint8)
