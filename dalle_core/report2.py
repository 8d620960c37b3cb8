"""The categories that the second edition adds to `dalle eval` (``shared/spec/shapes-world-v2.md``).

    orientation          "a C triangle pointing D", alone or beside another object
    translation_<T>      a pair's top half rendered by the world, the bottom half completed; the prompt is the
                         transform alone ("the same mirrored on the bottom"), one category per transform T
    translation_prompt   a whole pair generated from a caption that names the top scene and the transform
    analogy              panels A, B and C rendered, panel D completed; the prompt is "a visual analogy"
    matrix               panels 1-8 rendered, panel 9 completed; the prompt is "a puzzle"
    phrasing             a GenEval-six prompt in a phrasing outside the training families, judged as the prompt
    novel                a held-out color-shape pair, alone or with another object

Given parts are rendered by the world at the model's image size, and completion keeps the pixels outside
the completed token rectangle, as v1's `completion` does. A layout whose panels do not fall on the
model's token grid (3 x 3 panels on an 8 x 8 grid) cannot be completed honestly: its categories are
reported as not applicable. None of these prompts holds a held-out pair except `novel`'s.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np

from .dalle import Dalle
from .judge import judge_image
from .layouts import (
    TRANSFORM_KINDS,
    LayoutCaption,
    caption_of_layout,
    check_side,
    completed_region,
    render_layout,
    sample_analogy,
    sample_matrix,
    sample_pair,
)
from .phrasing import held_out_phrasing
from .world import (
    COLORS,
    DIRECTIONS,
    HELD_OUT,
    RELATIONS,
    SHAPES,
    Expectation,
    Group,
    caption_of,
    parse_caption,
)

TRANSLATIONS = {f"translation_{kind.replace(' ', '_')}": kind for kind in TRANSFORM_KINDS}
CATEGORIES2 = (
    "orientation",
    *TRANSLATIONS,
    "translation_prompt",
    "analogy",
    "matrix",
    "phrasing",
    "novel",
)
LAYOUT_OF = {
    **dict.fromkeys(TRANSLATIONS, "pair"),
    "translation_prompt": "pair",
    "analogy": "analogy",
    "matrix": "matrix",
}
CHANCE = {"analogy": 1 / 80, "matrix": 1 / 80}  # a guess among 5 shapes x 8 colors x 2 sizes


@dataclass
class Case:
    """One trial: the prompt, the caption the image is judged against, and for completion the given image
    and the (row, col) token cell where the completed rectangle starts."""

    prompt: str
    judged: str
    given: np.ndarray | None = None
    region: tuple[int, int] | None = None


def not_applicable(category: str, image_size: int, grid: int) -> str | None:
    """Why a category cannot run on a model of this image size and token grid, or None when it can."""
    kind = LAYOUT_OF.get(category)
    if kind is None:
        return None
    if completed_region(kind, grid) is None:
        return f"the {kind}'s panels do not fall on the model's {grid}x{grid} token grid"
    try:
        check_side(kind, image_size)
    except ValueError as e:
        return str(e)
    return None


def _object(rng: random.Random, shapes: tuple[str, ...] = SHAPES) -> Group:
    """A colored object that is not a held-out pair."""
    shape = rng.choice(shapes)
    return Group(shape, color=rng.choice([c for c in COLORS if (c, shape) not in HELD_OUT]))


def _with_another(g: Group, rng: random.Random) -> str:
    """`g` alone (half of the time), in a list with another object, or in a relation with it."""
    form = rng.choice(["alone", "alone", "list", "relation"])
    if form == "alone":
        return caption_of(Expectation((g,)))
    pair = [g, _object(rng, tuple(s for s in SHAPES if s != g.shape))]
    if form == "list":
        rng.shuffle(pair)
        return caption_of(Expectation(tuple(pair)))
    return caption_of(Expectation(tuple(pair), relation=rng.choice(list(RELATIONS))))


def _geneval_prompt(rng: random.Random) -> str:
    """A prompt in one of the GenEval six forms (as the v1 categories say them), without held-out pairs."""
    form = rng.choice(
        ["single_object", "colors", "counting", "two_object", "position", "color_attr"]
    )
    a, b = _object(rng), _object(rng)
    if form == "single_object":
        groups, relation = (Group(a.shape),), None
    elif form == "colors":
        groups, relation = (a,), None
    elif form == "counting":
        n = rng.randint(2, 4)
        groups, relation = (
            (Group(a.shape, count=n, article={2: "two", 3: "three", 4: "four"}[n]),),
            None,
        )
    elif form == "two_object":
        groups, relation = (Group(a.shape), Group(b.shape)), None
    elif form == "position":
        groups, relation = (Group(a.shape), Group(b.shape)), rng.choice(list(RELATIONS))
    else:
        groups, relation = (a, b), None
    return caption_of(Expectation(groups, relation))


def case(category: str, i: int, seed: int, image_size: int, grid: int) -> Case:
    """Trial number i of a category (the same for the same seed), at a model's image size and token grid."""
    rng = random.Random(f"{category}/{seed}/{i}")
    if category == "orientation":
        color = rng.choice([c for c in COLORS if (c, "triangle") not in HELD_OUT])
        prompt = _with_another(
            Group("triangle", color=color, direction=rng.choice(DIRECTIONS)), rng
        )
        return Case(prompt, prompt)
    if category == "novel":
        color, shape = rng.choice(sorted(HELD_OUT))
        prompt = _with_another(Group(shape, color=color), rng)
        return Case(prompt, prompt)
    if category == "phrasing":
        prompt = _geneval_prompt(rng)
        return Case(held_out_phrasing(parse_caption(prompt), rng), prompt)
    kind = LAYOUT_OF[category]
    region = completed_region(kind, grid)
    if category == "translation_prompt":
        prompt = caption_of_layout(sample_pair(rng).caption)
        return Case(prompt, prompt)
    if category in TRANSLATIONS:
        s = sample_pair(rng, TRANSLATIONS[category])
        prompt = caption_of_layout(LayoutCaption("pair", s.caption.transform))
    else:
        s = sample_analogy(rng) if kind == "analogy" else sample_matrix(rng)
        prompt = caption_of_layout(LayoutCaption(kind))
    return Case(prompt, prompt, render_layout(s.layout, image_size), region)


def kept(original: np.ndarray, image: np.ndarray, y: int, x: int) -> bool:
    """Whether `image` keeps every pixel of `original` outside the rectangle from (y, x) to the bottom-right."""
    outside = np.ones(original.shape[:2], bool)
    outside[y:, x:] = False
    return bool(np.array_equal(image[outside], original[outside]))


def trial(
    model: Dalle, category: str, i: int, candidates: int, seed: int, canonical: bool = False
) -> tuple[bool, np.ndarray, str]:
    """Run trial i of a category on the model: (passed, the top image, the prompt). With `canonical`, the
    prompt said is the caption judged (for phrasing: the canonical form of the held-out phrasing)."""
    c = case(category, i, seed, model.image_size, model.grid)
    prompt = c.judged if canonical else c.prompt
    settings = dict(n=1, candidates=candidates, seed=seed * 100_003 + i)
    if c.given is None:
        image = model.generate(prompt, **settings)[0].image
        return judge_image(image, c.judged)[0], image, prompt
    image = model.complete(c.given, prompt, region=c.region, **settings)[0].image
    ok = kept(c.given, image, *model.rectangle_pixels(c.region)) and judge_image(image, c.judged)[0]
    return ok, image, prompt
