"""The shapes world (``shared/spec/shapes-world.md``): scenes, captions, rendering.

A scene is a background and 1-4 objects; a caption describes it exactly in the
world's grammar. One caption parser (`parse_caption`) turns any caption into an
`Expectation`; the sampler draws scenes from expectations and the evaluator
judges images against them, so the two cannot disagree about what a caption means.
All geometry is in fractions of the canvas side W, with y growing downwards.

The second edition (``shared/spec/shapes-world-v2.md``) adds triangles that point down, left
or right ("a red triangle pointing left") and the held-out color-shape pairs; its layouts of
panels are in `layouts`, its paraphrases in `phrasing`, its training stream in `world2`.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field, replace
from itertools import permutations

import numpy as np
from PIL import Image, ImageDraw

from .normalise import normalise

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "orange": (245, 130, 20),
    "yellow": (245, 215, 20),
    "green": (40, 170, 60),
    "cyan": (20, 190, 210),
    "blue": (35, 70, 220),
    "purple": (140, 50, 190),
    "pink": (245, 120, 190),
}
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "white": (255, 255, 255),
    "black": (0, 0, 0),
    "gray": (128, 128, 128),
}
SHAPES = ("circle", "square", "triangle", "diamond", "cross")
DIRECTIONS = (
    "up",
    "down",
    "left",
    "right",
)  # where a triangle's apex points (v2; "up" unless stated)
HELD_OUT = frozenset(
    {("purple", "cross"), ("orange", "triangle"), ("cyan", "square")}
)  # v2: never in training
PLURALS = {
    "circle": "circles",
    "square": "squares",
    "triangle": "triangles",
    "diamond": "diamonds",
    "cross": "crosses",
}
SIZE_RANGES = {"small": (0.16, 0.22), "large": (0.31, 0.40)}
SIZE_SPLIT = 0.27  # a parsed box side below this fraction of W is small
SIZE_WORDS = {"small": "small", "tiny": "small", "large": "large", "big": "large"}
NUMBER_WORDS = {"two": 2, "three": 3, "four": 4, "2": 2, "3": 3, "4": 4}
# relation phrase -> canonical direction of B as seen from A ("A left of B": B is to the right)
RELATIONS = {
    "to the left of": "left",
    "left of": "left",
    "to the right of": "right",
    "right of": "right",
    "above": "above",
    "over": "above",
    "below": "below",
    "under": "below",
}
# where phrase -> (column, row) in the 3x3 grid of thirds
WHERE = {
    "in the top left": (0, 0),
    "at the top": (1, 0),
    "in the top right": (2, 0),
    "on the left": (0, 1),
    "in the center": (1, 1),
    "on the right": (2, 1),
    "in the bottom left": (0, 2),
    "at the bottom": (1, 2),
    "in the bottom right": (2, 2),
}
MARGIN_PX = 1.0  # boxes keep at least this many pixels from the canvas edge
MIN_SIZE = 4  # the smallest canvas side W on which a large box (0.40 W) fits inside the margins
GAP = 0.03  # any two boxes are at least this far apart on the x or the y axis
DRAW_REL_MIN, JUDGE_REL_MIN = 0.25, 0.1  # relation thresholds for drawing and for judging
WHERE_MARGIN = 0.02  # drawn centres keep this far from the thirds' borders


class CaptionError(ValueError):
    """A caption that is not in the world's grammar."""


_AWAY_FROM_APEX = {"up": (0.0, 1.0), "down": (0.0, -1.0), "left": (1.0, 0.0), "right": (-1.0, 0.0)}


def centroid_offset(shape: str, direction: str, s: float) -> tuple[float, float]:
    """Where the mean of a shape's pixels lies from its box centre: s/6 from it, away from a triangle's apex."""
    if shape != "triangle":
        return 0.0, 0.0
    x, y = _AWAY_FROM_APEX[direction]
    return x * s / 6, y * s / 6


@dataclass(frozen=True)
class Obj:
    """One object: its box of side `s` is centred at (`cx`, `cy`), all in fractions of W (or of a panel's unit)."""

    shape: str
    color: str
    size: str
    cx: float
    cy: float
    s: float
    direction: str = "up"  # a triangle's; other shapes keep "up"

    @property
    def centre(self) -> tuple[float, float]:
        """The mean of the shape's pixels (an upward triangle's lies s/6 below its box centre)."""
        if self.shape != "triangle":
            return self.cx, self.cy
        ox, oy = centroid_offset(self.shape, self.direction, self.s)
        return self.cx + ox, self.cy + oy


@dataclass(frozen=True)
class Scene:
    background: str
    objects: tuple[Obj, ...]


@dataclass(frozen=True)
class Group:
    """`count` alike objects; attributes left as None are not stated."""

    shape: str
    count: int = 1
    color: str | None = None
    size: str | None = None
    where: str | None = None  # a key of WHERE, only for a lone object
    article: str = "a"  # how a count of one is said: "a"/"an" or "one"
    direction: str | None = None  # a lone triangle's stated direction (v2); None means up


@dataclass(frozen=True)
class Expectation:
    """What a caption says: groups of objects, an optional relation from groups[0] to groups[1]."""

    groups: tuple[Group, ...]
    relation: str | None = None  # a key of RELATIONS
    background: str | None = None

    @property
    def n_objects(self) -> int:
        return sum(g.count for g in self.groups)

    @property
    def form(self) -> str:
        if self.relation:
            return "relation"
        if len(self.groups) > 1:
            return "list"
        return "count" if self.groups[0].count > 1 else "single"


# ----------------------------------------------------------------------------- captions


def caption_of(e: Expectation) -> str:
    """The caption text for an expectation (inverse of `parse_caption`)."""

    def group(g: Group) -> str:
        words = [g.size, g.color, g.shape if g.count == 1 else PLURALS[g.shape]]
        words = [w for w in words if w]
        if g.count == 1:
            head = "one" if g.article == "one" else ("an" if words[0][0] in "aeiou" else "a")
        else:
            head = (
                g.article
                if g.article in NUMBER_WORDS and NUMBER_WORDS[g.article] == g.count
                else str(g.count)
            )
        if g.direction and g.count == 1:
            words += ["pointing", g.direction]
        text = " ".join([head, *words])
        return f"{text} {g.where}" if g.where else text

    parts = [group(g) for g in e.groups]
    if e.relation:
        text = f"{parts[0]} {e.relation} {parts[1]}"
    elif len(parts) > 1:
        text = ", ".join(parts[:-1]) + " and " + parts[-1]
    else:
        text = parts[0]
    return f"{text} on a {e.background} background" if e.background else text


def _parse_group(words: list[str], i: int, *, plural_ok: bool) -> tuple[Group, int]:
    """Parse one group starting at words[i]; returns it and the index after it."""
    if i >= len(words):
        raise CaptionError("the caption ends where an object was expected")
    head = words[i]
    if head in ("a", "an", "one"):
        count, plural = 1, False
    elif head in NUMBER_WORDS and plural_ok:
        count, plural = NUMBER_WORDS[head], True
    else:
        raise CaptionError(f"expected 'a', 'an', 'one' or a number, got {head!r}")
    i += 1
    size = color = None
    if i < len(words) and words[i] in SIZE_WORDS:
        size, i = SIZE_WORDS[words[i]], i + 1
    if i < len(words) and words[i] in COLORS:
        color, i = words[i], i + 1
    if i >= len(words):
        raise CaptionError("the caption ends where a shape was expected")
    nouns = {p: s for s, p in PLURALS.items()} if plural else {s: s for s in SHAPES}
    if words[i] not in nouns:
        raise CaptionError(f"expected a {'plural ' if plural else ''}shape, got {words[i]!r}")
    article = "a" if head == "an" else head
    shape, i = nouns[words[i]], i + 1
    direction = None
    if i < len(words) and words[i] == "pointing":
        if shape != "triangle" or count != 1:
            raise CaptionError("only a lone triangle can be said to point somewhere")
        if i + 1 >= len(words) or words[i + 1] not in DIRECTIONS:
            raise CaptionError(f"expected one of {', '.join(DIRECTIONS)} after 'pointing'")
        direction, i = words[i + 1], i + 2
    return Group(shape, count, color, size, article=article, direction=direction), i


def _match_phrase(words: list[str], i: int, phrases) -> str | None:
    for p in sorted(phrases, key=len, reverse=True):
        n = len(p.split())
        if words[i : i + n] == p.split():
            return p
    return None


def parse_caption(text: str) -> Expectation:
    """Parse a caption of the grammar into an `Expectation`; raises `CaptionError` otherwise."""
    text = normalise(text)
    background = None
    for bg in BACKGROUNDS:
        suffix = f" on a {bg} background"
        if text.endswith(suffix):
            text, background = text[: -len(suffix)], bg
            break
    words = text.replace(",", " ,").split()
    if not words:
        raise CaptionError("the caption is empty")
    first, i = _parse_group(words, 0, plural_ok=True)
    if i == len(words):
        return Expectation((first,), background=background)
    rel = _match_phrase(words, i, RELATIONS)
    if rel and first.count == 1:
        second, j = _parse_group(words, i + len(rel.split()), plural_ok=False)
        if j != len(words):
            raise CaptionError(f"unexpected words after the second object: {' '.join(words[j:])!r}")
        return Expectation((first, second), relation=rel, background=background)
    where = _match_phrase(words, i, WHERE)
    if where and first.count == 1:
        if i + len(where.split()) != len(words):
            raise CaptionError(f"unexpected words after {where!r}")
        return Expectation((replace(first, where=where),), background=background)
    groups = [first]
    while i < len(words) and words[i] == ",":
        g, i = _parse_group(words, i + 1, plural_ok=True)
        groups.append(g)
    if i >= len(words) or words[i] != "and":
        raise CaptionError(
            f"expected ',', 'and', a relation or a position at {' '.join(words[i:])!r}"
        )
    g, i = _parse_group(words, i + 1, plural_ok=True)
    groups.append(g)
    if i != len(words):
        raise CaptionError(f"unexpected words at the end: {' '.join(words[i:])!r}")
    e = Expectation(tuple(groups), background=background)
    if not 2 <= e.n_objects <= 4:
        raise CaptionError(f"a scene holds 1 to 4 objects, this caption names {e.n_objects}")
    return e


# ----------------------------------------------------------------------------- meaning


def cell_of(x: float, y: float) -> tuple[int, int]:
    """The (column, row) of the 3x3 grid of thirds that holds a point."""
    return min(int(x * 3), 2), min(int(y * 3), 2)


def relation_holds(a: Obj, b: Obj, relation: str, *, drawing: bool = False) -> bool:
    """Whether "a <relation> b" is true: the judging rule, or the stricter drawing rule."""
    (ax, ay), (bx, by) = a.centre, b.centre
    dx, dy = bx - ax, by - ay
    direction = RELATIONS[relation]
    main, other = (dx, dy) if direction in ("left", "right") else (dy, dx)
    if direction in ("right", "below"):  # "A right of B": B lies to the left, so flip
        main = -main
    if drawing:
        return main >= DRAW_REL_MIN and abs(other) <= main / 2
    return main > JUDGE_REL_MIN and abs(main) > abs(other)


def _fits(g: Group, o: Obj) -> str | None:
    """Why object `o` is not an instance of group `g`, or None when it is."""
    if o.shape != g.shape:
        return f"a {o.color} {o.shape} where a {g.shape} was expected"
    if g.color and o.color != g.color:
        return f"the {o.shape} is {o.color}, not {g.color}"
    if g.size and o.size != g.size:
        return f"the {o.shape} is {o.size}, not {g.size}"
    if o.shape == "triangle" and o.direction != (g.direction or "up"):
        return f"the {o.color} triangle points {o.direction}, not {g.direction or 'up'}"
    if g.where and cell_of(*o.centre) != WHERE[g.where]:
        return f"the {o.shape} is not {g.where}"
    return None


def check(scene: Scene, e: Expectation, *, drawing: bool = False) -> tuple[bool, str]:
    """Whether a scene satisfies an expectation, and a reason that says why (not)."""
    if e.background and scene.background != e.background:
        return False, f"the background is {scene.background}, not {e.background}"
    objs = scene.objects
    if len(objs) != e.n_objects:
        return False, f"{len(objs)} objects where the caption names {e.n_objects}"
    slots = [g for g in e.groups for _ in range(g.count)]
    best = None
    for perm in permutations(range(len(objs))):
        reasons = [r for g, k in zip(slots, perm, strict=True) if (r := _fits(g, objs[k]))]
        if not reasons and e.relation:
            a, b = objs[perm[0]], objs[perm[1]]
            if not relation_holds(a, b, e.relation, drawing=drawing):
                reasons = [f"the {a.color} {a.shape} is not {e.relation} the {b.color} {b.shape}"]
        if not reasons:
            return True, "ok"
        if best is None or len(reasons) < len(best):
            best = reasons
    return False, "; ".join(best)


# ----------------------------------------------------------------------------- sampling


def sample_expectation(rng: random.Random) -> Expectation:
    """Draw a random caption structure; omitted attributes stay None."""

    def group(count: int = 1, p_color: float = 0.75, p_size: float = 0.35) -> Group:
        if count == 1:
            article = "one" if rng.random() < 0.1 else "a"
        else:
            article = rng.choice([k for k, v in NUMBER_WORDS.items() if v == count])
        return Group(
            rng.choice(SHAPES),
            count,
            rng.choice(list(COLORS)) if rng.random() < p_color else None,
            rng.choice(["small", "large"]) if rng.random() < p_size else None,
            article=article,
        )

    form = rng.choices(["single", "count", "relation", "list"], weights=[0.25, 0.15, 0.3, 0.3])[0]
    if form == "single":
        g = group()
        groups = (replace(g, where=rng.choice(list(WHERE))) if rng.random() < 0.4 else g,)
        relation = None
    elif form == "count":
        groups, relation = (group(count=rng.randint(2, 4), p_color=0.5),), None
    elif form == "relation":
        groups, relation = (group(), group()), rng.choice(list(RELATIONS))
    else:
        total = rng.choices([2, 3, 4], weights=[0.45, 0.35, 0.2])[0]
        counts = []
        while sum(counts) < total:
            counts.append(rng.randint(1, total - sum(counts)) if rng.random() < 0.25 else 1)
        if len(counts) == 1:
            counts = [1, total - 1]
        groups, relation = tuple(group(count=c) for c in counts), None
    background = rng.choice(list(BACKGROUNDS)) if rng.random() < 0.3 else None
    return Expectation(groups, relation, background)


def say_sizes(e: Expectation, rng: random.Random) -> Expectation:
    """`e` with each stated size said by a synonym chosen at random ("big", "tiny", ...)."""

    def word(size: str | None) -> str | None:
        return size and rng.choice([w for w, s in SIZE_WORDS.items() if s == size])

    return replace(e, groups=tuple(replace(g, size=word(g.size)) for g in e.groups))


def _say(e: Expectation, rng: random.Random) -> str:
    """The caption, with synonyms chosen at random for sizes."""
    return caption_of(say_sizes(e, rng))


def realize(e: Expectation, rng: random.Random, W: int = 64, tries: int = 200) -> Scene | None:
    """Draw a scene that satisfies `e` (by the drawing rules), or None if placement failed."""
    margin = MARGIN_PX / W
    slots = [g for g in e.groups for _ in range(g.count)]
    background = e.background or rng.choice(list(BACKGROUNDS))
    for _ in range(tries):
        objs: list[Obj] = []
        for g in slots:
            size = g.size or rng.choice(["small", "large"])
            s = rng.uniform(*SIZE_RANGES[size])
            lo, hi = s / 2 + margin, 1 - s / 2 - margin
            direction = g.direction or "up"
            dx, dy = centroid_offset(
                g.shape, direction, s
            )  # the pixels' centre from the box centre
            if g.where:
                col, row = WHERE[g.where]
                x0, x1 = (
                    max(lo, col / 3 + WHERE_MARGIN - dx),
                    min(hi, (col + 1) / 3 - WHERE_MARGIN - dx),
                )
                y0, y1 = (
                    max(lo, row / 3 + WHERE_MARGIN - dy),
                    min(hi, (row + 1) / 3 - WHERE_MARGIN - dy),
                )
                if x0 > x1 or y0 > y1:
                    break
                cx, cy = rng.uniform(x0, x1), rng.uniform(y0, y1)
            elif objs and e.relation:
                a = objs[0]
                side = RELATIONS[e.relation]
                sign = 1 if side in ("left", "above") else -1
                main = sign * rng.uniform(DRAW_REL_MIN, 0.8)
                other = rng.uniform(-0.5, 0.5) * abs(main)
                ax, ay = a.centre
                x, y = (
                    (ax + main, ay + other)
                    if side in ("left", "right")
                    else (ax + other, ay + main)
                )
                cx, cy = x - dx, y - dy
            else:
                cx, cy = rng.uniform(lo, hi), rng.uniform(lo, hi)
            o = Obj(g.shape, g.color or rng.choice(list(COLORS)), size, cx, cy, s, direction)
            if not (lo <= cx <= hi and lo <= cy <= hi) or any(boxes_touch(o, p) for p in objs):
                break
            objs.append(o)
        else:
            order = list(range(len(objs)))
            if not e.relation:
                rng.shuffle(order)
            scene = Scene(background, tuple(objs[k] for k in order))
            if check(scene, e, drawing=True)[0]:
                return scene
    return None


def boxes_touch(a: Obj, b: Obj, gap: float = GAP) -> bool:
    """Whether two boxes are closer than `gap` on both axes."""
    return box_touches(a.cx, a.cy, a.s, b, gap)


def box_touches(cx: float, cy: float, s: float, b: Obj, gap: float = GAP) -> bool:
    """Whether a box of side `s` centred at (`cx`, `cy`) and the box of `b` are closer than `gap` on both axes."""
    gap = gap + (s + b.s) / 2
    return abs(cx - b.cx) < gap and abs(cy - b.cy) < gap


def sample_scene(rng: random.Random, W: int = 64) -> tuple[Scene, str]:
    """A random scene and a caption that describes it exactly."""
    if W < MIN_SIZE:
        raise ValueError(f"a world image needs a side of at least {MIN_SIZE} pixels, got {W}")
    while True:
        e = sample_expectation(rng)
        scene = realize(e, rng, W)
        if scene is not None:
            return scene, _say(e, rng)


def scene_for(caption: str, seed: int = 0, W: int = 64) -> Scene:
    """A scene drawn at random (by `seed`) that satisfies `caption`."""
    e = parse_caption(caption)
    scene = realize(e, random.Random(seed), W, tries=2000)
    if scene is None:
        raise CaptionError(f"could not place the objects of {caption!r}")
    return scene


# ----------------------------------------------------------------------------- rendering

SUPERSAMPLE = 4
_ANGLES = np.linspace(
    0, 2 * np.pi, 64, endpoint=False
)  # a circle is drawn as the 64-gon at these angles
_COS, _SIN = np.cos(_ANGLES), np.sin(_ANGLES)


def shape_polygons(
    shape: str, cx: float, cy: float, s: float, direction: str = "up"
) -> list[list[tuple[float, float]]]:
    """The shape as polygons in the same units as its centre and side (a circle as a 64-gon);
    a triangle's apex is at the middle of the box side that `direction` names, its base on the opposite one."""
    h = s / 2
    if shape == "square":
        return [[(cx - h, cy - h), (cx + h, cy - h), (cx + h, cy + h), (cx - h, cy + h)]]
    if shape == "triangle":
        return [
            {
                "up": [(cx - h, cy + h), (cx + h, cy + h), (cx, cy - h)],
                "down": [(cx - h, cy - h), (cx + h, cy - h), (cx, cy + h)],
                "left": [(cx + h, cy - h), (cx + h, cy + h), (cx - h, cy)],
                "right": [(cx - h, cy - h), (cx - h, cy + h), (cx + h, cy)],
            }[direction]
        ]
    if shape == "diamond":
        return [[(cx, cy - h), (cx + h, cy), (cx, cy + h), (cx - h, cy)]]
    if shape == "cross":
        t = s / 6
        return [
            [(cx - h, cy - t), (cx + h, cy - t), (cx + h, cy + t), (cx - h, cy + t)],
            [(cx - t, cy - h), (cx + t, cy - h), (cx + t, cy + h), (cx - t, cy + h)],
        ]
    if shape == "circle":
        return [list(zip((cx + h * _COS).tolist(), (cy + h * _SIN).tolist(), strict=True))]
    raise ValueError(f"unknown shape {shape!r}")


def _pixels_under(o: Obj, W: int) -> tuple[int, int, int, int] | None:
    """The rectangle (x0, y0, x1, y1) of canvas pixels that an object's drawing may touch, clipped to the
    canvas, or None when it lies outside. Drawing fills no pixel farther than one supersampled pixel from
    the box, and the rectangle keeps two."""
    h = (o.s * W * SUPERSAMPLE / 2 + 2) / SUPERSAMPLE
    x0, y0 = max(0, math.floor(o.cx * W - h)), max(0, math.floor(o.cy * W - h))
    x1, y1 = min(W, math.ceil(o.cx * W + h)), min(W, math.ceil(o.cy * W + h))
    return (x0, y0, x1, y1) if x0 < x1 and y0 < y1 else None


def render(scene: Scene, W: int = 64) -> np.ndarray:
    """The scene as an anti-aliased uint8 RGB array of shape (W, W, 3): drawn at SUPERSAMPLE times the side,
    each pixel the mean of its SUPERSAMPLE x SUPERSAMPLE block."""
    big = W * SUPERSAMPLE
    background = BACKGROUNDS[scene.background]
    drawn = Image.new("RGB", (big, big), background)
    draw = ImageDraw.Draw(drawn)
    for o in scene.objects:
        for poly in shape_polygons(o.shape, o.cx * big, o.cy * big, o.s * big, o.direction):
            draw.polygon(poly, fill=COLORS[o.color])
    # A block no object touches is the background's colour: only the blocks under objects are averaged. The
    # averaging and pasting call Pillow's core image (`Image.im`) directly: for a box of a few hundred pixels,
    # the checks of the public `reduce` and `paste` cost more than the work (tests/test_render_pinned.py).
    image = Image.new("RGB", (W, W), background)
    factor = (SUPERSAMPLE, SUPERSAMPLE)
    for x0, y0, x1, y1 in filter(None, (_pixels_under(o, W) for o in scene.objects)):
        box = (x0 * SUPERSAMPLE, y0 * SUPERSAMPLE, x1 * SUPERSAMPLE, y1 * SUPERSAMPLE)
        image.im.paste(drawn.im.reduce(factor, box), (x0, y0, x1, y1))
    return np.asarray(image)


def shape_coverage(
    shape: str, cx: float, cy: float, s: float, W: int, H: int | None = None, direction: str = "up"
) -> np.ndarray:
    """Anti-aliased coverage in [0, 1] of one shape on an H x W canvas (H = W unless given; geometry in pixels)."""
    img = Image.new("L", (W * SUPERSAMPLE, (H or W) * SUPERSAMPLE), 0)
    draw = ImageDraw.Draw(img)
    for poly in shape_polygons(
        shape, cx * SUPERSAMPLE, cy * SUPERSAMPLE, s * SUPERSAMPLE, direction
    ):
        draw.polygon(poly, fill=255)
    return np.asarray(img.reduce(SUPERSAMPLE), dtype=np.float32) / 255.0


@dataclass
class WorldSample:
    """A rendered scene with its caption."""

    image: np.ndarray
    caption: str
    scene: Scene = field(repr=False)


def sample(seed: int, W: int = 64) -> WorldSample:
    """The world's scene number `seed`: the same seed always gives the same scene."""
    scene, caption = sample_scene(random.Random(seed), W)
    return WorldSample(render(scene, W), caption, scene)
