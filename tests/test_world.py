"""The shapes world, its caption grammar and its evaluator, pinned to shared/spec/shapes-world.md."""

import random
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dalle_core import world
from dalle_core.judge import judge, judge_image, parse, scenes_match
from dalle_core.world import (
    CaptionError,
    Obj,
    Scene,
    caption_of,
    check,
    parse_caption,
    render,
    sample,
)


def test_spec_numbers():
    assert world.COLORS == {
        "red": (220, 30, 30),
        "orange": (245, 130, 20),
        "yellow": (245, 215, 20),
        "green": (40, 170, 60),
        "cyan": (20, 190, 210),
        "blue": (35, 70, 220),
        "purple": (140, 50, 190),
        "pink": (245, 120, 190),
    }
    assert world.BACKGROUNDS == {
        "white": (255, 255, 255),
        "black": (0, 0, 0),
        "gray": (128, 128, 128),
    }
    assert world.SIZE_RANGES == {"small": (0.16, 0.22), "large": (0.31, 0.40)}
    assert world.SIZE_SPLIT == 0.27 and world.GAP == 0.03
    assert (world.DRAW_REL_MIN, world.JUDGE_REL_MIN) == (0.25, 0.1)


def test_deterministic_for_a_seed():
    a, b = sample(123), sample(123)
    assert a.caption == b.caption and np.array_equal(a.image, b.image)
    assert sample(124).caption != a.caption or not np.array_equal(sample(124).image, a.image)


def test_scene_constraints_hold():
    W = 64
    for seed in range(500):
        s = sample(seed, W).scene
        assert 1 <= len(s.objects) <= 4
        for o in s.objects:
            lo, hi = world.SIZE_RANGES[o.size]
            assert lo <= o.s <= hi
            assert o.cx - o.s / 2 >= 1 / W - 1e-9 and o.cx + o.s / 2 <= 1 - 1 / W + 1e-9
            assert o.cy - o.s / 2 >= 1 / W - 1e-9 and o.cy + o.s / 2 <= 1 - 1 / W + 1e-9
        for i, a in enumerate(s.objects):
            for b in s.objects[i + 1 :]:
                gx = abs(a.cx - b.cx) - (a.s + b.s) / 2
                gy = abs(a.cy - b.cy) - (a.s + b.s) / 2
                assert max(gx, gy) >= 0.03 - 1e-9


def test_a_canvas_too_small_for_a_large_shape_is_refused():
    assert sample(0, world.MIN_SIZE).image.shape == (world.MIN_SIZE, world.MIN_SIZE, 3)
    with pytest.raises(ValueError, match="at least 4 pixels, got 3"):
        sample(0, world.MIN_SIZE - 1)


def test_every_caption_form_is_sampled():
    rng = random.Random(0)
    caps = [world.sample_scene(rng)[1] for _ in range(3000)]
    forms = {parse_caption(c).form for c in caps}
    assert forms == {"single", "count", "relation", "list"}
    text = " ".join(caps)
    for word in [
        "tiny",
        "small",
        "big",
        "large",
        "2",
        "two",
        "one",
        "left of",
        "to the left of",
        "over",
        "under",
        "in the top left",
        "at the bottom",
        "on a gray background",
        "crosses",
        ",",
    ]:
        assert word in text, word


@pytest.mark.parametrize(
    "caption",
    [
        "a red circle",
        "an orange square",
        "one tiny blue cross in the top right",
        "3 big green triangles",
        "a purple diamond to the left of a yellow circle on a black background",
        "two small squares, a pink cross and one triangle",
        "a circle and three crosses on a white background",
    ],
)
def test_caption_round_trip(caption):
    e = parse_caption(caption)
    assert parse_caption(caption_of(e)) == e


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "a red",
        "a dog",
        "five circles",
        "a circle, a square",
        "two circles and three squares",
        "a circle left of two squares",
    ],
)
def test_bad_captions_are_rejected(bad):
    with pytest.raises(CaptionError):
        parse_caption(bad)


def test_parse_renders_exactly():
    """parse(render(scene)) recovers every object's shape, color, size, centre and the background."""
    wrong = [
        seed
        for seed in range(1000)
        if not scenes_match(sample(seed).scene, parse(sample(seed).image), tol=0.02)
    ]
    assert wrong == []


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 10**9))
def test_render_satisfies_its_caption(seed):
    s = sample(seed)
    assert judge_image(s.image, s.caption) == (True, "ok")


def _recolored(scene: Scene, i: int, color: str) -> Scene:
    objs = list(scene.objects)
    objs[i] = replace(objs[i], color=color)
    return replace(scene, objects=tuple(objs))


def test_judge_fails_a_changed_color_with_reason():
    scene = Scene(
        "white",
        (
            Obj("circle", "red", "small", 0.3, 0.5, 0.2),
            Obj("square", "blue", "large", 0.7, 0.5, 0.35),
        ),
    )
    caption = "a red circle to the left of a blue square"
    assert judge(parse(render(scene)), caption) == (True, "ok")
    ok, reason = judge(parse(render(_recolored(scene, 0, "green"))), caption)
    assert not ok and "green" in reason and "red" in reason


def test_judge_fails_a_deleted_object_with_reason():
    scene = Scene(
        "gray",
        (
            Obj("circle", "red", "small", 0.3, 0.5, 0.2),
            Obj("square", "blue", "large", 0.7, 0.5, 0.35),
        ),
    )
    ok, reason = judge(
        parse(render(replace(scene, objects=scene.objects[:1]))), "a red circle and a blue square"
    )
    assert not ok and "1 objects" in reason and "2" in reason


def test_judge_fails_a_moved_object_with_reason():
    scene = Scene(
        "black",
        (
            Obj("circle", "red", "small", 0.3, 0.5, 0.2),
            Obj("square", "blue", "large", 0.7, 0.5, 0.35),
        ),
    )
    moved = replace(scene, objects=(replace(scene.objects[0], cx=0.85, cy=0.15), scene.objects[1]))
    ok, reason = judge(parse(render(moved)), "a red circle to the left of a blue square")
    assert not ok and "not to the left of" in reason


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 10**9), st.data())
def test_property_edits_break_the_caption(seed, data):
    """Recolor an object whose color is stated, or delete one: the judge fails the edited scene."""
    s = sample(seed)
    e = parse_caption(s.caption)
    scene = s.scene
    kind = data.draw(st.sampled_from(["delete", "recolor"]))
    if kind == "delete":
        i = data.draw(st.integers(0, len(scene.objects) - 1))
        edited = replace(scene, objects=scene.objects[:i] + scene.objects[i + 1 :])
        if not edited.objects:
            return
    else:
        if not any(g.color for g in e.groups):
            return
        # recolor every object to a color that no group states: some stated color must now fail
        stated = {g.color for g in e.groups if g.color}
        other = next(c for c in world.COLORS if c not in stated)
        edited = replace(scene, objects=tuple(replace(o, color=other) for o in scene.objects))
    ok, reason = judge(parse(render(edited)), s.caption)
    assert not ok and reason


def test_relation_rules():
    a = Obj("circle", "red", "small", 0.2, 0.5, 0.2)
    b = Obj("square", "blue", "small", 0.5, 0.55, 0.2)
    assert world.relation_holds(a, b, "left of") and world.relation_holds(b, a, "right of")
    assert world.relation_holds(a, b, "left of", drawing=True)
    near = replace(b, cx=0.35)  # 0.15 W: enough to judge, not enough to draw
    assert world.relation_holds(a, near, "left of") and not world.relation_holds(
        a, near, "left of", drawing=True
    )
    assert not world.relation_holds(a, b, "above")


def test_check_counts_and_background():
    scene = Scene(
        "white",
        (Obj("cross", "red", "small", 0.2, 0.2, 0.2), Obj("cross", "red", "small", 0.7, 0.7, 0.2)),
    )
    assert check(scene, parse_caption("two red crosses on a white background"))[0]
    assert not check(scene, parse_caption("three red crosses"))[0]
    ok, reason = check(scene, parse_caption("two crosses on a black background"))
    assert not ok and "background" in reason


def test_scene_for_a_caption():
    s = world.scene_for("a small green triangle below a large pink diamond", seed=3)
    assert judge_image(render(s), "a small green triangle below a large pink diamond")[0]
