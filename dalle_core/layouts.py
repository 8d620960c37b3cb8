"""The layouts of the second edition (``shared/spec/shapes-world-v2.md``): canvases of panels.

    pair      top half and bottom half: the bottom is the top changed by one transform
    analogy   2 x 2 panels A B / C D: B is A changed by a rule, D is C changed by the same rule
    matrix    3 x 3 panels of one object each: shape, color and size follow a rule along every row

Panels tile the canvas, so on a token grid that the layout's rows and columns divide, every panel
is a token rectangle and the part that is completed (the bottom half, panel D, panel 9) is one
that reaches the bottom-right corner. Each panel has a frame of its own: an object's box centre
and side are in units from the panel's top-left corner, the unit being the canvas side W for a
pair's halves (1 wide, 0.5 high) and the panel side P for analogy and matrix panels (1 by 1).

The spec asks for a margin of one token cell between a box and its panel's edge. With 8 px cells
on a 12 x 12 grid that leaves 0.33 W of a half (the largest pair object is 0.40 W), 0.67 P of an
analogy panel (largest 0.70 P) and 0.5 P of a matrix panel (largest 0.80 P), so the spec's sizes
win and boxes keep `PANEL_MARGIN` of P from their panel's edge: objects of neighbouring panels
are then at least 0.033 W apart, as far as the v1 world keeps any two objects (`world.GAP`).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, replace
from functools import cache
from itertools import permutations

import numpy as np
from PIL import Image

from .normalise import normalise
from .world import (
    BACKGROUNDS,
    COLORS,
    GAP,
    HELD_OUT,
    MARGIN_PX,
    NUMBER_WORDS,
    PLURALS,
    SHAPES,
    SIZE_RANGES,
    SIZE_SPLIT,
    SIZE_WORDS,
    CaptionError,
    Expectation,
    Group,
    Obj,
    Scene,
    box_touches,
    boxes_touch,
    caption_of,
    centroid_offset,
    parse_caption,
    render,
)

LAYOUTS = ("pair", "analogy", "matrix")
PANEL_MARGIN = 0.05  # boxes keep this share of their panel's side P (a half's height) from its edge
CENTRE_TOLERANCE = (
    0.1  # a transformed centre may be this far (in frame units: W, or P) from where it belongs
)
MATRIX_OFFSET = (
    0.1  # a matrix object's box centre lies within this (of P) of its panel's centre, on each axis
)
TRANSFORM_KINDS = ("same", "color", "shape", "size", "mirrored", "upside down")
RULE_KINDS = TRANSFORM_KINDS[1:]  # an analogy's rules: every transform but "the same"
MATRIX_RULES = {
    "shape": ("constant", "distribute three", "progression"),
    "color": ("constant", "distribute three"),
    "size": ("constant",),
}  # size, with two values, cannot take "distribute three"
_FLIP = {"up": "down", "down": "up"}
_MIRROR = {"left": "right", "right": "left"}


@dataclass(frozen=True)
class Kind:
    """A layout's geometry: `rows` x `cols` panels, each 1 unit wide and `height` high, the unit being
    `unit_share` of W; box sides drawn from `sizes` (in units), read as small below `split`."""

    rows: int
    cols: int
    unit_share: float
    height: float
    sizes: dict[str, tuple[float, float]]
    split: float

    @property
    def margin(self) -> float:
        """How far boxes keep from their panel's edge, in units."""
        return PANEL_MARGIN * self.height

    @property
    def gap(self) -> float:
        """How far apart two boxes of a panel keep on the x or the y axis, in units (0.03 W as in v1)."""
        return GAP / self.unit_share


KINDS = {
    "pair": Kind(
        2, 1, 1.0, 0.5, SIZE_RANGES, SIZE_SPLIT
    ),  # sizes as fractions of W, the v1 rules in each half
    "analogy": Kind(2, 2, 0.5, 1.0, {"small": (0.30, 0.40), "large": (0.55, 0.70)}, 0.475),
    "matrix": Kind(3, 3, 1 / 3, 1.0, {"small": (0.40, 0.50), "large": (0.65, 0.80)}, 0.575),
}


def check_side(kind: str, W: int) -> None:
    """ValueError unless a canvas of side W holds the layout: panels on whole pixels, margins of 1 px or more."""
    k = KINDS[kind]
    if W % k.rows or W % k.cols:
        raise ValueError(
            f"a {kind} layout needs a side divisible by {math.lcm(k.rows, k.cols)}, got {W}"
        )
    least = math.ceil(MARGIN_PX / (PANEL_MARGIN * k.height * k.unit_share))
    if W < least:
        raise ValueError(
            f"a {kind} layout needs a side of at least {least} px (for 1 px margins), got {W}"
        )


def panel_boxes(kind: str, W: int) -> list[tuple[int, int, int, int]]:
    """Each panel's pixel rectangle (y0, y1, x0, x1) in raster order."""
    k = KINDS[kind]
    return [
        (r * W // k.rows, (r + 1) * W // k.rows, c * W // k.cols, (c + 1) * W // k.cols)
        for r in range(k.rows)
        for c in range(k.cols)
    ]


def completed_region(kind: str, grid: int) -> tuple[int, int] | None:
    """The (row, col) token cell where the completed part starts on a grid of side `grid`, or None when the
    layout's panels do not fall on that grid's cells."""
    k = KINDS[kind]
    if grid % k.rows or grid % k.cols:
        return None
    return grid - grid // k.rows, grid - grid // k.cols


# ----------------------------------------------------------------------------- layouts and transforms


@dataclass(frozen=True)
class Layout:
    """A background and the objects of each panel (raster order), each in its panel's frame."""

    kind: str
    background: str
    panels: tuple[tuple[Obj, ...], ...]


@dataclass(frozen=True)
class Transform:
    """A pair's transform or an analogy's rule: `kind` one of TRANSFORM_KINDS, `value` the color, shape or
    size it sets (None for the others)."""

    kind: str
    value: str | None = None

    @property
    def words(self) -> str:
        """How a caption says it: "the same", "the same in green", "the same as circles", ..."""
        tail = {
            "same": "",
            "color": f" in {self.value}",
            "shape": f" as {PLURALS.get(self.value or '', '')}",
            "size": f" but {self.value}",
            "mirrored": " mirrored",
            "upside down": " upside down",
        }[self.kind]
        return "the same" + tail


def all_transforms(kinds: tuple[str, ...] = TRANSFORM_KINDS) -> list[Transform]:
    """Every transform of these kinds, with every value."""
    values = {"color": list(COLORS), "shape": list(SHAPES), "size": ["small", "large"]}
    return [Transform(k, v) for k in kinds for v in values.get(k, [None])]


def apply(t: Transform, objs: tuple[Obj, ...], kind: str, rng: random.Random) -> tuple[Obj, ...]:
    """The objects of a panel changed by `t`. A new shape or size keeps each object's centre (the mean of
    its pixels; a new side is drawn from the layout's range with `rng`); mirroring and turning upside down
    flip the boxes in the panel, and a triangle's direction with them."""
    if t.kind == "same":
        return objs
    out = []
    for o in objs:
        shape, color, size, cx, cy, s, direction = (
            o.shape,
            o.color,
            o.size,
            o.cx,
            o.cy,
            o.s,
            o.direction,
        )
        if t.kind == "color":
            color = t.value
        elif t.kind in ("shape", "size"):
            x, y = o.centre
            if t.kind == "shape":
                shape, direction = t.value, "up"
            else:
                size, s = t.value, rng.uniform(*KINDS[kind].sizes[t.value])
            ox, oy = centroid_offset(shape, direction, s)
            cx, cy = x - ox, y - oy
        elif t.kind == "mirrored":
            cx, direction = 1 - cx, _MIRROR.get(direction, direction)  # other shapes keep "up"
        else:  # upside down
            cy = KINDS[kind].height - cy
            direction = _FLIP.get(direction, direction) if shape == "triangle" else direction
        out.append(Obj(shape, color, size, cx, cy, s, direction))
    return tuple(out)


def describe(o: Obj) -> str:
    """An object in the caption grammar, all its attributes stated ("a small red triangle pointing down")."""
    direction = o.direction if o.shape == "triangle" and o.direction != "up" else None
    return caption_of(
        Expectation((Group(o.shape, color=o.color, size=o.size, direction=direction),))
    )


def _same(want: Obj, got: Obj, tol: float) -> bool:
    return (got.shape, got.color, got.size, got.direction) == (
        want.shape,
        want.color,
        want.size,
        want.direction,
    ) and math.dist(got.centre, want.centre) <= tol


def _differ(want: Obj, got: Obj, tol: float) -> str | None:
    if (got.shape, got.color, got.size, got.direction) != (
        want.shape,
        want.color,
        want.size,
        want.direction,
    ):
        return f"{describe(got)} where {describe(want)} belongs"
    d = math.dist(got.centre, want.centre)
    return f"{describe(got)} lies {d:.2f} from where it belongs" if d > tol else None


def matches(want: tuple[Obj, ...], got: tuple[Obj, ...], tol: float = CENTRE_TOLERANCE) -> bool:
    """Whether the objects `got` are `want`: the same shapes, colors, sizes, directions and count, each centre
    within `tol` of its counterpart's."""
    return len(got) == len(want) and any(
        all(_same(w, got[k], tol) for w, k in zip(want, order, strict=True))
        for order in permutations(range(len(got)))
    )


def mismatch(
    want: tuple[Obj, ...], got: tuple[Obj, ...], tol: float = CENTRE_TOLERANCE
) -> str | None:
    """Why the objects `got` are not `want` (see `matches`), or None when they are."""
    if matches(want, got, tol):
        return None
    if len(got) != len(want):
        return f"{len(got)} objects where {len(want)} belong"
    reasons = [
        [r for w, k in zip(want, order, strict=True) if (r := _differ(w, got[k], tol))]
        for order in permutations(range(len(got)))
    ]
    return "; ".join(min(reasons, key=len))


def rules_shown(
    a: tuple[Obj, ...], b: tuple[Obj, ...], kind: str, tol: float = CENTRE_TOLERANCE
) -> list[Transform]:
    """The rules (transforms but "the same") that turn the objects `a` into `b`."""
    rng = random.Random(0)  # sides drawn for a new size do not matter: only centres are compared
    return [t for t in all_transforms(RULE_KINDS) if matches(apply(t, a, kind, rng), b, tol)]


# ----------------------------------------------------------------------------- matrices


def _rows(values: list[str]) -> list[list[str]]:
    return [values[i : i + 3] for i in (0, 3, 6)]


def rule_holds(rule: str, values: list[str]) -> bool:
    """Whether the 9 values of one attribute (raster order) follow a matrix rule."""
    rows = _rows(values)
    if rule == "constant":
        return all(len(set(r)) == 1 for r in rows)
    if rule == "distribute three":
        cols = [values[c::3] for c in range(3)]
        return len({frozenset(r) for r in rows}) == 1 and all(len(set(x)) == 3 for x in rows + cols)
    if rule == "progression":
        return all(
            SHAPES.index(r[c + 1]) == (SHAPES.index(r[c]) + 1) % len(SHAPES)
            for r in rows
            for c in (0, 1)
        )
    raise ValueError(f"unknown matrix rule {rule!r}")


def matrix_answer(panels: list[Obj]) -> Obj | None:
    """The unique panel 9 that panels 1-8 determine, or None when they determine none or several.

    For each attribute the answer's value is the one that lets all nine follow one of its rules;
    the returned object has that shape, color and size (its geometry is panel 8's, unused).
    """
    domains = {"shape": list(SHAPES), "color": list(COLORS), "size": ["small", "large"]}
    answer = {}
    for attribute, rules in MATRIX_RULES.items():
        given = [getattr(o, attribute) for o in panels]
        fits = [v for v in domains[attribute] if any(rule_holds(r, [*given, v]) for r in rules)]
        if len(fits) != 1:
            return None
        answer[attribute] = fits[0]
    return replace(panels[-1], direction="up", **answer)


# ----------------------------------------------------------------------------- captions


@dataclass(frozen=True)
class LayoutCaption:
    """What a layout's caption says: its kind; for a pair the transform and, if named, the top scene; for an
    analogy the rule, if named."""

    kind: str
    transform: Transform | None = None
    scene: Expectation | None = None


def caption_of_layout(c: LayoutCaption) -> str:
    """The caption text (inverse of `parse_layout_caption`)."""
    if c.kind == "matrix":
        return "a puzzle"
    if c.kind == "analogy":
        return "a visual analogy" + (
            f": {c.transform.words.removeprefix('the same ')}" if c.transform else ""
        )
    top = f"{caption_of(c.scene)} on the top and " if c.scene else ""
    return f"{top}{c.transform.words} on the bottom"


def _parse_transform(text: str) -> Transform:
    words = text.split()
    if words[:2] != ["the", "same"]:
        raise CaptionError(f"a transform starts with 'the same', got {text!r}")
    rest = words[2:]
    shapes = {p: s for s, p in PLURALS.items()}
    if not rest:
        return Transform("same")
    if rest in (["mirrored"], ["upside", "down"]):
        return Transform(" ".join(rest))
    if len(rest) == 2 and rest[0] == "in" and rest[1] in COLORS:
        return Transform("color", rest[1])
    if len(rest) == 2 and rest[0] == "as" and rest[1] in shapes:
        return Transform("shape", shapes[rest[1]])
    if len(rest) == 2 and rest[0] == "but" and rest[1] in SIZE_WORDS:
        return Transform("size", SIZE_WORDS[rest[1]])
    raise CaptionError(f"unknown transform {text!r}")


def parse_layout_caption(text: str) -> LayoutCaption | None:
    """The layout a caption describes, or None for a caption of one scene; `CaptionError` for a layout
    caption that is not in the grammar."""
    text = normalise(text)
    if text == "a puzzle":
        return LayoutCaption("matrix")
    if text == "a visual analogy":
        return LayoutCaption("analogy")
    if text.startswith("a visual analogy: "):
        rule = _parse_transform("the same " + text.removeprefix("a visual analogy: "))
        if rule.kind == "same":
            raise CaptionError("an analogy's rule changes something")
        return LayoutCaption("analogy", rule)
    if not text.endswith(" on the bottom"):
        return None
    scene_text, named, transform_text = text.removesuffix(" on the bottom").rpartition(
        " on the top and "
    )
    scene = parse_caption(scene_text) if named else None
    if scene and (
        scene.relation
        or scene.background
        or scene.n_objects > 3
        or any(g.where or g.direction for g in scene.groups)
    ):
        raise CaptionError(
            "a pair's top scene is 1-3 objects with no position, relation, direction or background"
        )
    return LayoutCaption("pair", _parse_transform(transform_text), scene)


# ----------------------------------------------------------------------------- sampling


@dataclass(frozen=True)
class LayoutSample:
    """A layout and everything its caption can say (a pair's top scene and transform, an analogy's rule);
    for a matrix, the rule of each attribute."""

    layout: Layout
    caption: LayoutCaption
    matrix_rules: dict[str, str] | None = None

    def spoken(self, rng: random.Random) -> LayoutCaption:
        """The caption as training says it: a pair's top scene named in half of them, an analogy's rule in
        one in four."""
        if self.layout.kind == "pair" and rng.random() < 0.5:
            return replace(self.caption, scene=None)
        if self.layout.kind == "analogy" and rng.random() >= 0.25:
            return replace(self.caption, transform=None)
        return self.caption


def fits_panel(objs: tuple[Obj, ...], k: Kind) -> bool:
    """Whether boxes keep the margin to their panel's edge and the gap between each other."""
    m = k.margin
    inside = all(
        m + o.s / 2 <= o.cx <= 1 - m - o.s / 2 and m + o.s / 2 <= o.cy <= k.height - m - o.s / 2
        for o in objs
    )
    return inside and not any(
        boxes_touch(a, b, k.gap) for i, a in enumerate(objs) for b in objs[i + 1 :]
    )


@cache
def _shapes_for(t: Transform) -> list[str]:
    """The shapes an object may have before `t`: not the one a shape transform sets, nor one whose held-out
    color a color transform sets."""
    return [
        s
        for s in SHAPES
        if not (t.kind == "shape" and s == t.value) and (t.value, s) not in HELD_OUT
    ]


@cache
def _colors_for(shape: str, t: Transform) -> list[str]:
    """The colors an object of `shape` may have before `t`: no held-out pair before or after it, and not the
    color a color transform sets."""
    after = t.value if t.kind == "shape" else shape
    return [
        c
        for c in COLORS
        if (c, shape) not in HELD_OUT
        and (c, after) not in HELD_OUT
        and not (t.kind == "color" and c == t.value)
    ]


@cache
def _sizes_for(t: Transform) -> list[str]:
    """The sizes an object may have before `t`: not the one a size transform sets."""
    return [s for s in ("small", "large") if not (t.kind == "size" and s == t.value)]


def _place(
    slots: list[Group], kind: str, t: Transform, rng: random.Random, tries: int = 20
) -> tuple[Obj, ...] | None:
    """Objects for these slots placed in a panel (each tried at up to `tries` random positions), unstated
    colors and sizes drawn from those that `t` allows (`_colors_for`, `_sizes_for`), or None when one
    found no room."""
    k = KINDS[kind]
    gap = k.gap
    objs: list[Obj] = []
    for g in slots:
        size = g.size or rng.choice(_sizes_for(t))
        s = rng.uniform(*k.sizes[size])
        color = g.color or rng.choice(_colors_for(g.shape, t))
        lo = k.margin + s / 2
        for _ in range(tries):
            cx, cy = rng.uniform(lo, 1 - lo), rng.uniform(lo, k.height - lo)
            if not any(box_touches(cx, cy, s, p, gap) for p in objs):
                objs.append(Obj(g.shape, color, size, cx, cy, s))
                break
        else:
            return None
    return tuple(objs)


def _draw_transform(rng: random.Random, kinds: tuple[str, ...]) -> Transform:
    """A transform of one of `kinds` (each kind equally likely), with a value drawn at random."""
    return rng.choice(all_transforms((rng.choice(kinds),)))


def _before_after(
    slots: list[Group], t: Transform, kind: str, rng: random.Random
) -> tuple[tuple[Obj, ...], tuple[Obj, ...]] | None:
    """A panel and the panel that `t` makes of it, both fitting their panel, or None. Objects that a size
    transform grows are placed grown, so that they fit, then made small for the panel before."""
    k = KINDS[kind]
    if t == Transform("size", "large"):
        after = _place([Group(g.shape, color=g.color, size="large") for g in slots], kind, t, rng)
        before = after and apply(Transform("size", "small"), after, kind, rng)
    else:
        before = _place(slots, kind, t, rng)
        after = before and apply(t, before, kind, rng)
    if not before or not fits_panel(after, k):
        return None
    if t.kind in ("mirrored", "upside down") and matches(before, after, 2 * CENTRE_TOLERANCE):
        return None  # the flip must show: some object moves well beyond the judge's tolerance
    return before, after


def _top_groups(rng: random.Random, t: Transform) -> list[Group]:
    """The groups of a pair's top scene: 1-3 objects in the v1 forms without position or relation, a color
    stated with p 0.75 and a size with p 0.35 (among those that `t` allows). Three large objects do not fit
    side by side in a half, so a size transform, which makes them all large on one side, has at most two."""
    total = rng.choices([1, 2, 3], weights=[0.4, 0.35, 0.25 if t.kind != "size" else 0])[0]
    counts = [total] if total > 1 and rng.random() < 0.3 else [1] * total
    groups = []
    for count in counts:
        if count == 1:
            article = "one" if rng.random() < 0.1 else "a"
        else:
            article = rng.choice([w for w, n in NUMBER_WORDS.items() if n == count])
        shape = rng.choice(_shapes_for(t))
        color = rng.choice(_colors_for(shape, t)) if rng.random() < 0.75 else None
        size = rng.choice(_sizes_for(t)) if rng.random() < 0.35 else None
        groups.append(Group(shape, count, color, size, article=article))
    return groups


def sample_pair(rng: random.Random, transform_kind: str | None = None) -> LayoutSample:
    """A pair: a top scene of 1-3 objects and the bottom that a transform (of `transform_kind`, else any)
    makes of it."""
    t = _draw_transform(rng, (transform_kind,) if transform_kind else TRANSFORM_KINDS)
    while True:
        groups = _top_groups(rng, t)
        drawn = _before_after(
            [replace(g, count=1) for g in groups for _ in range(g.count)], t, "pair", rng
        )
        if drawn is not None:
            layout = Layout("pair", rng.choice(list(BACKGROUNDS)), drawn)
            return LayoutSample(layout, LayoutCaption("pair", t, Expectation(tuple(groups))))


def _analogy_slots(rng: random.Random, rule: Transform) -> list[Group]:
    """One or two objects for a panel, shapes drawn among those the rule allows. A large object leaves no
    room for a second one (0.55 P + 0.30 P and the gaps exceed the panel), so two objects are small and a
    panel whose size changes holds one."""
    sizes = [None] if rule.kind == "size" or rng.random() < 0.5 else ["small", "small"]
    return [Group(rng.choice(_shapes_for(rule)), size=size) for size in sizes]


def sample_analogy(rng: random.Random, rule_kind: str | None = None) -> LayoutSample:
    """An analogy A B / C D whose rule (of `rule_kind`, else any) is the only transform that turns A into B."""
    rule = _draw_transform(rng, (rule_kind,) if rule_kind else RULE_KINDS)
    other_flip = {"mirrored": Transform("upside down"), "upside down": Transform("mirrored")}.get(
        rule.kind
    )
    while True:
        ab = _before_after(_analogy_slots(rng, rule), rule, "analogy", rng)
        # The rule is the only transform that turns A into B: a color, shape or size rule by construction (no
        # object of A had the value it sets, and it alone changes that attribute); a flip moves some object
        # (`_before_after`) and must not look like the other flip too.
        if (
            not ab
            or other_flip
            and matches(apply(other_flip, ab[0], "analogy", rng), ab[1], 2 * CENTRE_TOLERANCE)
        ):
            continue
        cd = _before_after(_analogy_slots(rng, rule), rule, "analogy", rng)
        if cd:
            layout = Layout("analogy", rng.choice(list(BACKGROUNDS)), (*ab, *cd))
            return LayoutSample(layout, LayoutCaption("analogy", rule))


def _attribute_grid(rule: str, values: list[str], rng: random.Random) -> list[str]:
    """The 9 values (raster order) of one attribute following a matrix rule."""
    if rule == "constant":
        return [v for v in (rng.choice(values) for _ in range(3)) for _ in range(3)]
    if rule == "distribute three":
        three, step = (
            rng.sample(values, 3),
            rng.choice([1, 2]),
        )  # a Latin square: each row a shift of the first
        return [three[(c + step * r) % 3] for r in range(3) for c in range(3)]
    starts = [rng.randrange(len(SHAPES)) for _ in range(3)]
    return [SHAPES[(starts[r] + c) % len(SHAPES)] for r in range(3) for c in range(3)]


def sample_matrix(rng: random.Random) -> LayoutSample:
    """A 3 x 3 matrix of one object per panel whose attributes each follow one rule along every row (not all
    constant); panels 1-8 determine panel 9 (see `matrix_answer`)."""
    k = KINDS["matrix"]
    domains = {"shape": list(SHAPES), "color": list(COLORS), "size": ["small", "large"]}
    while True:
        rules = {a: rng.choice(r) for a, r in MATRIX_RULES.items()}
        if all(r == "constant" for r in rules.values()):
            continue
        grids = {a: _attribute_grid(r, domains[a], rng) for a, r in rules.items()}
        if any((c, s) in HELD_OUT for c, s in zip(grids["color"], grids["shape"], strict=True)):
            continue
        panels = []
        for shape, color, size in zip(grids["shape"], grids["color"], grids["size"], strict=True):
            s = rng.uniform(*k.sizes[size])
            b = min(MATRIX_OFFSET, 0.5 - s / 2 - k.margin)
            panels.append(
                (Obj(shape, color, size, 0.5 + rng.uniform(-b, b), 0.5 + rng.uniform(-b, b), s),)
            )
        return LayoutSample(
            Layout("matrix", rng.choice(list(BACKGROUNDS)), tuple(panels)),
            LayoutCaption("matrix"),
            matrix_rules=rules,
        )


SAMPLERS = {"pair": sample_pair, "analogy": sample_analogy, "matrix": sample_matrix}


# ----------------------------------------------------------------------------- rendering


def on_canvas(layout: Layout, W: int) -> Scene:
    """The layout as one scene of the whole canvas (objects in fractions of W)."""
    unit = KINDS[layout.kind].unit_share * W
    objs = []
    for (y0, _, x0, _), panel in zip(panel_boxes(layout.kind, W), layout.panels, strict=True):
        objs += [
            Obj(
                o.shape,
                o.color,
                o.size,
                (x0 + o.cx * unit) / W,
                (y0 + o.cy * unit) / W,
                o.s * unit / W,
                o.direction,
            )
            for o in panel
        ]
    return Scene(layout.background, tuple(objs))


def render_layout(layout: Layout, W: int) -> np.ndarray:
    """The layout as an anti-aliased uint8 RGB array (W, W, 3), by the world's renderer."""
    check_side(layout.kind, W)
    return render(on_canvas(layout, W), W)


@dataclass
class LayoutImage:
    """A rendered layout with its full caption (a pair's top scene and an analogy's rule named)."""

    image: np.ndarray
    caption: str
    sample: LayoutSample

    @property
    def note(self) -> str:
        """A matrix's rules in words (for figures), else ""."""
        rules = self.sample.matrix_rules
        return ", ".join(f"{a} {r}" for a, r in rules.items()) if rules else ""


def sample_layout(kind: str, seed: int, W: int = 96) -> LayoutImage:
    """The layout of this kind number `seed`: the same seed always gives the same layout."""
    check_side(kind, W)
    s = SAMPLERS[kind](random.Random(f"{kind}/{seed}"))
    return LayoutImage(render_layout(s.layout, W), caption_of_layout(s.caption), s)


def as_top_half(image: np.ndarray, fill: int = 200) -> np.ndarray:
    """A pair's canvas (W, W, 3) holding any image (W, W, 3) in its top half: the part unlike the border's colour,
    centred on that colour, at its own size if it fits in W x W/2 (a pair's objects are as large as a scene's),
    else scaled down until it does; the bottom half, to be completed, is gray `fill`."""
    W = image.shape[0]
    border = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])  # (4W, 3)
    background = np.median(border, axis=0).astype(np.uint8)  # (3,)
    ys, xs = np.nonzero(np.abs(image.astype(int) - background).sum(-1) > 30)
    canvas = np.empty_like(image)
    canvas[:] = background
    canvas[W // 2 :] = fill
    if len(ys):
        content = image[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]  # (h, w, 3)
        h, w = content.shape[:2]
        scale = min(1.0, (W - 2) / w, (W // 2 - 2) / h)  # a pixel of the background around it
        if scale < 1:
            size = (max(1, round(w * scale)), max(1, round(h * scale)))
            content = np.asarray(Image.fromarray(content).resize(size, Image.Resampling.BOX))
            h, w = content.shape[:2]
        y, x = (W // 2 - h) // 2, (W - w) // 2
        canvas[y : y + h, x : x + w] = content
    return canvas
