"""The world's evaluator: parse an image back into a scene (or a layout's panels), and judge it against a caption."""

from __future__ import annotations

import random

import numpy as np
from scipy import ndimage

from .layouts import (
    KINDS,
    LayoutCaption,
    apply,
    check_side,
    describe,
    matrix_answer,
    mismatch,
    panel_boxes,
    parse_layout_caption,
    rules_shown,
)
from .world import (
    BACKGROUNDS,
    COLORS,
    DIRECTIONS,
    SHAPES,
    SIZE_SPLIT,
    Obj,
    Scene,
    centroid_offset,
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
UPRIGHT = tuple((s, "up") for s in SHAPES)  # the v1 templates: (shape, direction)
ORIENTED = (
    *UPRIGHT,
    *(("triangle", d) for d in DIRECTIONS if d != "up"),
)  # v2: a triangle may point anywhere


def parse(image: np.ndarray, oriented: bool = False) -> Scene:
    """Parse an RGB uint8 image (W, W, 3) of the shapes world into a `Scene`.

    A triangle is read as pointing up (the v1 templates) unless `oriented`, when the four
    directions of the second edition compete as templates of their own.
    """
    img = np.asarray(image, dtype=np.float32)[..., :3]
    W = img.shape[0]
    bg_idx = _background(img)
    objects = parse_objects(
        img, _BG_RGB[bg_idx], W, SIZE_SPLIT * W, oriented, min_area=MIN_AREA * W * W
    )
    return Scene(_BG_NAMES[bg_idx], objects)


def _background(img: np.ndarray) -> int:
    """The index of the background named by most border pixels."""
    border = np.concatenate([img[0], img[-1], img[:, 0], img[:, -1]])
    return int(
        np.bincount(
            np.argmin(((border[:, None] - _BG_RGB) ** 2).sum(-1), axis=1), minlength=3
        ).argmax()
    )


def parse_objects(
    img: np.ndarray, bg: np.ndarray, unit: float, split: float, oriented: bool, min_area: float
) -> tuple[Obj, ...]:
    """The objects of a float RGB image (H, W, 3) on background colour `bg`: geometry in units of `unit`
    pixels, small when the box side is below `split` pixels; components of fewer than `min_area`
    pixels are noise."""
    H, W = img.shape[:2]
    templates = ORIENTED if oriented else UPRIGHT
    fg = np.sqrt(((img - bg) ** 2).sum(-1)) > FOREGROUND_DISTANCE
    labels, n = ndimage.label(fg)
    objects = []
    for k, box in enumerate(ndimage.find_objects(labels), start=1):
        mask = labels == k
        area = int(mask.sum())
        if area < min_area:
            continue
        core = ndimage.binary_erosion(mask)
        pixels = img[core if core.sum() >= 4 else mask]
        color_idx = int(np.argmin(((np.median(pixels, axis=0) - _COLOR_RGB) ** 2).sum(-1)))
        ys, xs = np.nonzero(mask)
        side = max(box[0].stop - box[0].start, box[1].stop - box[1].start)
        bcx, bcy = (box[1].start + box[1].stop) / 2, (box[0].start + box[0].stop) / 2
        alpha = _coverage(img, mask, bg, _COLOR_RGB[color_idx])
        # the thresholded box is off by up to ~2 px (anti-aliased rims, thin tips): fit the side too
        fits = [(t, d) for t in templates for d in np.arange(side - 2.5, side + 2.01, 0.5)]
        (shape, direction), side = max(
            fits,
            key=lambda f: _soft_iou(alpha, shape_coverage(f[0][0], bcx, bcy, f[1], W, H, f[0][1])),
        )
        ox, oy = centroid_offset(
            shape, direction, side
        )  # store the box centre: Obj.centre adds it back
        cx, cy = xs.mean() + 0.5 - ox, ys.mean() + 0.5 - oy
        objects.append(
            Obj(
                shape,
                _COLOR_NAMES[color_idx],
                "small" if side < split else "large",
                cx / unit,
                cy / unit,
                side / unit,
                direction,
            )
        )
    return tuple(objects)


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
    """Parse an image and judge it against a caption: a layout's (`judge_layout`), or a scene's, whose
    triangles are read in four directions only when the caption states one (so a v1 caption is judged
    exactly as in v1)."""
    layout = parse_layout_caption(caption)
    if layout is not None:
        return judge_layout(image, layout)
    e = parse_caption(caption)
    return check(parse(image, oriented=any(g.direction for g in e.groups)), e)


def parse_layout(image: np.ndarray, kind: str) -> tuple[str, tuple[tuple[Obj, ...], ...]]:
    """The background of a layout image (W, W, 3) and each panel's objects in the panel's frame (raster
    order; triangles read in four directions)."""
    img = np.asarray(image, dtype=np.float32)[..., :3]
    W = img.shape[0]
    check_side(kind, W)
    bg_idx = _background(img)
    k = KINDS[kind]
    unit = k.unit_share * W
    panels = tuple(
        parse_objects(
            img[y0:y1, x0:x1], _BG_RGB[bg_idx], unit, k.split * unit, True, MIN_AREA * W * W
        )
        for y0, y1, x0, x1 in panel_boxes(kind, W)
    )
    return _BG_NAMES[bg_idx], panels


def judge_layout(image: np.ndarray, c: LayoutCaption) -> tuple[bool, str]:
    """Whether a layout image satisfies its caption, and a reason that names the panel at fault:

    * pair: the top holds 1-3 objects (and satisfies the caption's scene, if named); the bottom is the
      transform applied to the parsed top;
    * analogy: A and B show exactly one rule (the named one, if named); D is that rule applied to C;
    * matrix: one object per panel; panel 9 is the unique answer that panels 1-8 determine.
    """
    background, panels = parse_layout(image, c.kind)
    rng = random.Random(0)  # sides drawn for a new size do not matter: only centres are compared
    if c.kind == "pair":
        top, bottom = panels
        if not 1 <= len(top) <= 3:
            return False, f"the top half holds {len(top)} objects, not 1-3"
        ok, why = check(Scene(background, top), c.scene) if c.scene else (True, "ok")
        if not ok:
            return False, f"the top half: {why}"
        why = mismatch(apply(c.transform, top, "pair", rng), bottom)
        return (False, f"the bottom half: {why}") if why else (True, "ok")
    if c.kind == "analogy":
        a, b, c_panel, d = panels
        for name, objs in (("A", a), ("C", c_panel)):
            if not objs:
                return False, f"panel {name} holds no object"
        rules = rules_shown(a, b, "analogy")
        if c.transform and c.transform not in rules:
            return (
                False,
                f"panels A and B do not show the rule {c.transform.words.removeprefix('the same ')!r}",
            )
        if not c.transform and len(rules) != 1:
            return False, f"panels A and B show {len(rules)} rules, not one"
        rule = c.transform or rules[0]
        why = mismatch(apply(rule, c_panel, "analogy", rng), d)
        return (False, f"panel D: {why}") if why else (True, "ok")
    for i, objs in enumerate(panels[:8], start=1):
        if len(objs) != 1:
            return False, f"panel {i} holds {len(objs)} objects, not 1"
    answer = matrix_answer([objs[0] for objs in panels[:8]])
    if answer is None:
        return False, "panels 1-8 determine no single answer"
    last = panels[8]
    if len(last) != 1:
        return False, f"panel 9 holds {len(last)} objects where the answer is {describe(answer)}"
    got = last[0]
    if (got.shape, got.color, got.size, got.direction) != (
        answer.shape,
        answer.color,
        answer.size,
        "up",
    ):
        return False, f"panel 9: {describe(got)} where the answer is {describe(answer)}"
    return True, "ok"


def scenes_match(a: Scene, b: Scene, tol: float = 0.04) -> bool:
    """Whether two parsed scenes agree: background, and objects' shape, color, size and centre (within `tol` W)."""
    if a.background != b.background or len(a.objects) != len(b.objects):
        return False
    rest = list(b.objects)
    for o in a.objects:
        match = next(
            (
                p
                for p in rest
                if (p.shape, p.color, p.size) == (o.shape, o.color, o.size)
                and abs(p.cx - o.cx) <= tol
                and abs(p.cy - o.cy) <= tol
            ),
            None,
        )
        if match is None:
            return False
        rest.remove(match)
    return True
