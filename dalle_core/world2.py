"""The training stream of the second edition (``shared/spec/shapes-world-v2.md``).

A draw is a single scene (the v1 sampler's, a lone triangle's direction stated in half of the
captions) or a pair, analogy or matrix layout (`layouts`), its caption rewritten by the paraphrase
families (`phrasing`). No image or caption of the stream shows or names a held-out color-shape pair
(`world.HELD_OUT`): this is what the transformer and the scorer train on; the v1 stream
(`world.sample`) stays what the shipped model was trained on.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace

import numpy as np

from .layouts import LAYOUTS, SAMPLERS, LayoutCaption, LayoutSample, check_side, render_layout
from .phrasing import Style, draw_style, phrase, phrase_layout
from .world import (
    DIRECTIONS,
    HELD_OUT,
    Expectation,
    Scene,
    realize,
    render,
    sample_expectation,
    say_sizes,
)

MIX = {"scene": 0.4, "pair": 0.2, "analogy": 0.2, "matrix": 0.2}  # share of each kind of draw
P_POINTING = 0.5  # share of lone triangles whose caption states a direction


@dataclass
class Sample2:
    """A draw of the second edition: its image and caption, and what it shows: the scene and its caption's
    meaning (for a single scene) or the layout sample and what its caption says of it, and the paraphrase
    style of the caption."""

    image: np.ndarray
    caption: str
    kind: str  # "scene" or one of LAYOUTS
    style: Style
    expectation: Expectation | None = field(default=None, repr=False)
    scene: Scene | None = field(default=None, repr=False)
    layout: LayoutSample | None = field(default=None, repr=False)
    said: LayoutCaption | None = field(default=None, repr=False)


def check_stream_side(W: int) -> None:
    """ValueError unless every layout fits a canvas of side W."""
    for kind in LAYOUTS:
        check_side(kind, W)


def with_directions(e: Expectation, rng: random.Random) -> Expectation:
    """`e` with each lone triangle's direction stated (any of the four) with probability P_POINTING."""
    return replace(
        e,
        groups=tuple(
            replace(g, direction=rng.choice(DIRECTIONS))
            if g.shape == "triangle" and g.count == 1 and rng.random() < P_POINTING
            else g
            for g in e.groups
        ),
    )


def has_held_out(e: Expectation) -> bool:
    """Whether a caption's meaning names a held-out color-shape pair."""
    return any((g.color, g.shape) in HELD_OUT for g in e.groups)


def sample_scene2(rng: random.Random, W: int) -> tuple[Scene, Expectation]:
    """A single scene of the second edition without held-out pairs, and its caption's meaning (sizes said
    by synonyms as in v1)."""
    while True:
        e = with_directions(sample_expectation(rng), rng)
        scene = realize(e, rng, W)
        if scene is not None and not any((o.color, o.shape) in HELD_OUT for o in scene.objects):
            return scene, say_sizes(e, rng)


def sample2(seed: int, W: int = 96) -> Sample2:
    """Draw number `seed` of the second edition's stream: the same seed always gives the same draw."""
    check_stream_side(W)
    rng = random.Random(seed)
    kind = rng.choices(list(MIX), weights=list(MIX.values()))[0]
    style = draw_style(rng)
    if kind == "scene":
        scene, e = sample_scene2(rng, W)
        return Sample2(render(scene, W), phrase(e, style), kind, style, expectation=e, scene=scene)
    s = SAMPLERS[kind](rng)
    said = s.spoken(rng)
    return Sample2(
        render_layout(s.layout, W), phrase_layout(said, style), kind, style, layout=s, said=said
    )
