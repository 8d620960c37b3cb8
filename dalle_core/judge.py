"""The world's evaluator: parse an image back into a scene, and judge it against a caption."""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from .world import (
    BACKGROUNDS,
    COLORS,
    SHAPES,
    SIZE_SPLIT,
    Obj,
    Scene,
    check,
    parse_caption,
    shape_coverage,
)

_BG_NAMES = list(BACKGROUNDS)
_BG_RGB = np.array(list(BACKGROUNDS.values()), dtype=np.float32)
_COLOR_NAMES = list(COLORS)
_COLOR_RGB = np.array(list(COLORS.values()), dtype=np.float32)
FOREGROUND_DISTANCE = 40.0  # RGB distance from the background above which a pixel is foreground
MIN_AREA = 0.004  # components smaller than this fraction of the canvas are noise


def parse(image: np.ndarray) -> Scene:
    """Parse an RGB uint8 image (W, W, 3) of the shapes world into a `Scene`."""
    img = np.asarray(image, dtype=np.float32)[..., :3]
    W = img.shape[0]
    border = np.concatenate([img[0], img[-1], img[:, 0], img[:, -1]])
    bg_idx = int(np.bincount(np.argmin(((border[:, None] - _BG_RGB) ** 2).sum(-1), axis=1), minlength=3).argmax())
    bg = _BG_RGB[bg_idx]
    fg = np.sqrt(((img - bg) ** 2).sum(-1)) > FOREGROUND_DISTANCE
    labels, n = ndimage.label(fg)
    objects = []
    for k, box in enumerate(ndimage.find_objects(labels), start=1):
        mask = labels == k
        area = int(mask.sum())
        if area < MIN_AREA * W * W:
            continue
        core = ndimage.binary_erosion(mask)
        pixels = img[core if core.sum() >= 4 else mask]
        color_idx = int(np.argmin(((np.median(pixels, axis=0) - _COLOR_RGB) ** 2).sum(-1)))
        ys, xs = np.nonzero(mask)
        side = max(box[0].stop - box[0].start, box[1].stop - box[1].start)
        bcx, bcy = (box[1].start + box[1].stop) / 2, (box[0].start + box[0].stop) / 2
        alpha = _coverage(img, mask, bg, _COLOR_RGB[color_idx])
        # the thresholded box is off by up to ~2 px (anti-aliased rims, thin tips): fit the side too
        fits = [(s, d) for s in SHAPES for d in np.arange(side - 2.5, side + 2.01, 0.5)]
        shape, side = max(fits, key=lambda f: _soft_iou(alpha, shape_coverage(f[0], bcx, bcy, f[1], W)))
        cx, cy = xs.mean() + 0.5, ys.mean() + 0.5
        if shape == "triangle":  # store the box centre; Obj.centre adds the triangle's offset back
            cy -= side / 6
        objects.append(Obj(shape, _COLOR_NAMES[color_idx], "small" if side < SIZE_SPLIT * W else "large",
                           cx / W, cy / W, side / W))
    return Scene(_BG_NAMES[bg_idx], tuple(objects))


def _coverage(img: np.ndarray, mask: np.ndarray, bg: np.ndarray, color: np.ndarray) -> np.ndarray:
    """Per-pixel share of `color` over `bg`, limited to the component and a 1-pixel rim around it."""
    d = color - bg
    alpha = np.clip(((img - bg) @ d) / max(float(d @ d), 1.0), 0.0, 1.0)
    return alpha * ndimage.binary_dilation(mask)


def _soft_iou(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.minimum(a, b).sum() / max(np.maximum(a, b).sum(), 1e-6))


def judge(scene: Scene, caption: str) -> tuple[bool, str]:
    """Whether a parsed scene satisfies a caption (the judging rules), and why (not)."""
    return check(scene, parse_caption(caption))


def judge_image(image: np.ndarray, caption: str) -> tuple[bool, str]:
    """Parse an image and judge it against a caption."""
    return judge(parse(image), caption)


def scenes_match(a: Scene, b: Scene, tol: float = 0.04) -> bool:
    """Whether two parsed scenes agree: background, and objects' shape, color, size and centre (within `tol` W)."""
    if a.background != b.background or len(a.objects) != len(b.objects):
        return False
    rest = list(b.objects)
    for o in a.objects:
        match = next((p for p in rest if (p.shape, p.color, p.size) == (o.shape, o.color, o.size)
                      and abs(p.cx - o.cx) <= tol and abs(p.cy - o.cy) <= tol), None)
        if match is None:
            return False
        rest.remove(match)
    return True
