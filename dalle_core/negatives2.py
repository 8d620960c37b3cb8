"""The scorer's hard negatives for the second edition's draws (`world2.Sample2`), so that reranking
tells a right completion from a wrong one (see `train_clip` for how negatives enter the loss).

Negative captions, at most one per kind (`train_clip.KINDS` and `KINDS2`), in the draw's own
paraphrase style:
  * a single scene: the v1 kinds (`train_clip.EDITS`) and "direction" (a lone triangle pointing
    elsewhere);
  * a pair: "transform" (another transform, which the image does not show);
  * an analogy whose caption names its rule: "rule" (another rule).
Negative images, at most one per kind:
  * a single scene: the v1 kinds (`train_clip.negative_scenes`) and "direction" (a triangle turned);
  * a layout: "answer", its completed part wrong: a pair's bottom made by another transform, an
    analogy's D by another rule, a matrix's panel 9 with one attribute changed.
Every negative is false for its draw, and none shows or names a held-out color-shape pair.
"""

from __future__ import annotations

import random
from dataclasses import replace

import numpy as np
import torch

from .data import VAL_BASE
from .images import stack
from .layouts import (
    KINDS,
    MATRIX_OFFSET,
    RULE_KINDS,
    Layout,
    all_transforms,
    apply,
    fits_panel,
    matches,
    render_layout,
    rules_shown,
)
from .phrasing import phrase, phrase_layout
from .train_clip import (
    EDITS,
    Edit,
    false_edits,
    false_scenes,
    regroup,
    scene_edits,
    shuffled,
    with_objects,
)
from .world import (
    COLORS,
    DIRECTIONS,
    HELD_OUT,
    SHAPES,
    Expectation,
    Obj,
    Scene,
    caption_of,
    parse_caption,
    render,
)
from .world2 import Sample2, has_held_out, sample2


def _direction(e: Expectation, scene: Scene, rng: random.Random) -> list[Expectation]:
    """A lone triangle said to point another way (an unstated direction is up)."""
    return shuffled(
        [
            regroup(e, i, direction=d)
            for i, g in enumerate(e.groups)
            if g.shape == "triangle" and g.count == 1
            for d in DIRECTIONS
            if d != (g.direction or "up")
        ],
        rng,
    )


def _second_edition(edit: Edit) -> Edit:
    """`edit` for a second-edition caption: a direction kept only by a lone triangle (a shape or count edit may
    leave one elsewhere), and no candidate that names a held-out pair."""

    def edited(e: Expectation, scene: Scene, rng: random.Random) -> list[Expectation]:
        out = [
            replace(
                c,
                groups=tuple(
                    g if g.shape == "triangle" and g.count == 1 else replace(g, direction=None)
                    for g in c.groups
                ),
            )
            for c in edit(e, scene, rng)
        ]
        return [c for c in out if not has_held_out(c)]

    return edited


EDITS2: dict[str, Edit] = {
    kind: _second_edition(edit) for kind, edit in {**EDITS, "direction": _direction}.items()
}


def _clean(objs: tuple[Obj, ...]) -> bool:
    return not any((o.color, o.shape) in HELD_OUT for o in objs)


def negative_captions(s: Sample2, rng: random.Random) -> dict[str, str]:
    """Captions close to the draw's that are false for it, at most one per kind (see the module)."""
    if s.kind == "scene":
        return {
            kind: phrase(c, s.style)
            for kind, c in false_edits(s.expectation, s.scene, rng, EDITS2).items()
        }
    panels, said = s.layout.layout.panels, s.said
    if s.kind == "pair":
        for t in shuffled(all_transforms(), rng):
            after = apply(t, panels[0], "pair", rng)
            if not matches(after, panels[1]) and _clean(after):
                return {"transform": phrase_layout(replace(said, transform=t), s.style)}
    if s.kind == "analogy" and said.transform:
        shown = rules_shown(panels[0], panels[1], "analogy")
        for t in shuffled(all_transforms(RULE_KINDS), rng):
            if t not in shown and _clean(apply(t, panels[0], "analogy", rng)):
                return {"rule": phrase_layout(replace(said, transform=t), s.style)}
    return {}


def _turned(scene: Scene) -> list[Scene]:
    """The scene with one triangle pointing another way (its box unchanged, so the scene stays valid)."""
    return [
        with_objects(scene, {i: replace(o, direction=d)})
        for i, o in enumerate(scene.objects)
        if o.shape == "triangle"
        for d in DIRECTIONS
        if d != o.direction
    ]


def _wrong_answers(s: Sample2, rng: random.Random) -> list[tuple[Obj, ...]]:
    """Candidates for the completed panel that differ from the right one."""
    kind, panels = s.kind, s.layout.layout.panels
    if kind == "matrix":
        (o,) = panels[8]
        k = KINDS["matrix"]
        out = [(replace(o, shape=v),) for v in SHAPES if v != o.shape]
        out += [(replace(o, color=v),) for v in COLORS if v != o.color]
        size = "small" if o.size == "large" else "large"
        side = rng.uniform(*k.sizes[size])
        bound = min(MATRIX_OFFSET, 0.5 - side / 2 - k.margin)
        out.append(
            (
                replace(
                    o,
                    size=size,
                    s=side,
                    cx=0.5 + min(max(o.cx - 0.5, -bound), bound),
                    cy=0.5 + min(max(o.cy - 0.5, -bound), bound),
                ),
            )
        )
        return out
    given, right = (panels[0], panels[1]) if kind == "pair" else (panels[2], panels[3])
    return [
        wrong for t in all_transforms() if not matches(wrong := apply(t, given, kind, rng), right)
    ]


def negative_images(s: Sample2, rng: random.Random) -> dict[str, Scene | Layout]:
    """Scenes or layouts close to the draw's for which its caption is false, at most one per kind (see the
    module); `render_negative` draws them."""
    if s.kind == "scene":
        candidates = {**scene_edits(s.scene), "direction": _turned(s.scene)}
        candidates = {k: [c for c in v if _clean(c.objects)] for k, v in candidates.items()}
        meaning = parse_caption(
            caption_of(s.expectation)
        )  # sizes as the judge reads them ("big" is large)
        return false_scenes(meaning, candidates, rng)
    layout = s.layout.layout
    k = KINDS[s.kind]
    for wrong in shuffled(_wrong_answers(s, rng), rng):
        if _clean(wrong) and fits_panel(wrong, k):
            return {"answer": Layout(layout.kind, layout.background, (*layout.panels[:-1], wrong))}
    return {}


def render_negative(x: Scene | Layout, W: int) -> np.ndarray:
    """A negative scene or layout as an image."""
    return render(x, W) if isinstance(x, Scene) else render_layout(x, W)


def world2_batch(
    batch_size: int, seed: int, rank: int, k: int, size: int = 96
) -> tuple[torch.Tensor, list[str], list[Sample2]]:
    """Batch number k of the second edition with its draws: the pairs of
    `data.make_batch(ShapesWorld2(size), batch_size, seed, rank, k)`, and what each image shows."""
    rng = random.Random(f"{seed}/{rank}/{k}")
    samples = [sample2(rng.randrange(VAL_BASE), size) for _ in range(batch_size)]
    return stack([s.image for s in samples]), [s.caption for s in samples], samples


def with_negatives2(
    images: torch.Tensor, samples: list[Sample2], texts: int, pictures: int, rng: random.Random
) -> tuple[torch.Tensor, list[str], list[int], list[int]]:
    """`train_clip.with_negatives` for draws of the second edition: (all images, all captions, image owners,
    text owners)."""
    size = images.shape[-1]
    negative_texts, extra, text_owner, image_owner = [], [], [], []
    for i, s in enumerate(samples):
        options = list(negative_captions(s, rng).values())
        chosen = rng.sample(options, min(texts, len(options)))
        negative_texts += chosen
        text_owner += [i] * len(chosen)
        options = list(negative_images(s, rng).values())
        chosen = rng.sample(options, min(pictures, len(options)))
        extra += [render_negative(x, size) for x in chosen]
        image_owner += [i] * len(chosen)
    if extra:
        images = torch.cat([images, stack(extra)])
    return images, [s.caption for s in samples] + negative_texts, image_owner, text_owner
