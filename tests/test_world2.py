"""The second edition's training stream: paraphrase families, held-out pairs never shown or named, the
data source, the tokenizer's view of the families, and the scorer's new hard negatives."""

import random
import re

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dalle_core import world
from dalle_core.clip import make_clip
from dalle_core.data import ShapesWorld2, make_batch, open_source
from dalle_core.judge import judge_image, parse, parse_layout
from dalle_core.layouts import Layout, caption_of_layout, render_layout
from dalle_core.negatives2 import negative_captions, negative_images, with_negatives2, world2_batch
from dalle_core.normalise import normalise
from dalle_core.phrasing import (
    EVAL_CONJUNCTIONS,
    EVAL_FILLERS,
    FILLERS,
    Style,
    held_out_phrasing,
    phrase,
)
from dalle_core.report2 import case
from dalle_core.text import TextTokenizer, words_of
from dalle_core.train_clip import KINDS, KINDS2, ClipRecipe, ClipTask
from dalle_core.training import TrainArgs, train
from dalle_core.world import HELD_OUT, PLURALS, Scene, caption_of, parse_caption
from dalle_core.world2 import MIX, sample2

W = 96


def _normal(text: str) -> str:
    """A caption as the tokenizer's words see it, without final punctuation."""
    return " ".join(words_of(text)).rstrip(" .!")


def _names_held_out(text: str) -> bool:
    """Whether a caption names a held-out pair in any wording of the families or of the evaluation."""
    text = _normal(text)
    for color, shape in HELD_OUT:
        nouns = f"(?:{shape}|{PLURALS[shape]})"
        if re.search(
            rf"\b{color} (?:colored )?{nouns}\b|\b{nouns}(?: pointing \w+)? (?:that (?:is|are) |in ){color}\b",
            text,
        ):
            return True
    return False


def _objects(s) -> list[world.Obj]:
    return (
        list(s.scene.objects)
        if s.kind == "scene"
        else [o for p in s.layout.layout.panels for o in p]
    )


@pytest.fixture(scope="module")
def draws():
    return [sample2(seed, W) for seed in range(3000)]


@pytest.fixture(scope="module")
def tok2(draws) -> TextTokenizer:
    """A tokenizer trained on 2000 captions of the v2 stream (as `dalle train` would make one from it)."""
    return TextTokenizer.train([s.caption for s in draws[:2000]], length=40)


def test_the_checker_finds_held_out_pairs_in_every_wording():
    for text in [
        "a purple cross",
        "Two PURPLE crosses.",
        "a cross that is purple",
        "orange colored triangles",
        "a triangle pointing left that is orange",
        "a square in cyan",
    ]:
        assert _names_held_out(text), text
    assert not _names_held_out("a purple circle and a cyan cross")


def test_held_out_pairs_never_appear_in_the_v2_streams(draws):
    """Not in an image (the objects drawn, and what the evaluator reads back from the pixels of some), not
    in a caption, not in a scorer's negative caption or image."""
    for i, s in enumerate(draws):
        assert not any((o.color, o.shape) in HELD_OUT for o in _objects(s)), s.caption
        assert not _names_held_out(s.caption), s.caption
        rng = random.Random(i)
        for text in negative_captions(s, rng).values():
            assert not _names_held_out(text), (s.caption, text)
        for x in negative_images(s, rng).values():
            objs = x.objects if isinstance(x, Scene) else [o for p in x.panels for o in p]
            assert not any((o.color, o.shape) in HELD_OUT for o in objs), s.caption
    for s in draws[:150]:
        seen = (
            parse(s.image, oriented=True).objects
            if s.kind == "scene"
            else [o for p in parse_layout(s.image, s.kind)[1] for o in p]
        )
        assert not any((o.color, o.shape) in HELD_OUT for o in seen), s.caption
    images, captions = make_batch(ShapesWorld2(W), 64, seed=3, rank=0, k=5)
    assert not any(_names_held_out(c) for c in captions)


def test_the_stream_is_deterministic_and_mixes_every_kind(draws):
    a, b = sample2(11, W), sample2(11, W)
    assert a.caption == b.caption and np.array_equal(a.image, b.image)
    kinds = [s.kind for s in draws]
    for kind, share in MIX.items():
        assert abs(kinds.count(kind) / len(kinds) - share) < 0.04, kind
    assert all(s.image.shape == (W, W, 3) for s in draws[:50])


def test_a_scene_caption_in_plain_style_is_the_grammar(draws):
    for s in draws:
        if s.kind == "scene":
            assert phrase(s.expectation, Style()) == caption_of(s.expectation)


def test_draws_satisfy_their_meaning(draws):
    """A scene satisfies its caption's meaning (triangles in the direction stated, or up); a layout its full caption."""
    for s in draws[:120]:
        meaning = (
            caption_of(s.expectation) if s.kind == "scene" else caption_of_layout(s.layout.caption)
        )
        assert judge_image(s.image, meaning) == (True, "ok"), meaning


def test_every_family_is_used(draws):
    captions = [s.caption for s in draws]
    text = "\n".join(captions)
    for marker in [
        *FILLERS,
        "there are",
        " with ",
        " next to ",
        " that is ",
        " that are ",
        " colored ",
        "the ",
    ]:
        assert marker in text.lower(), marker
    assert any(c.endswith(".") for c in captions) and any(c.endswith("!") for c in captions)
    assert any(c[0].isupper() for c in captions) and any(c.isupper() for c in captions)
    scenes = [s for s in draws if s.kind == "scene"]
    assert any(s.caption.split()[0] in (*world.COLORS, *world.SHAPES) for s in scenes)  # no article
    assert any(" pointing " in s.caption for s in scenes)
    assert any(" on the top and " in c for c in captions) and any(
        c.startswith("the same") for c in captions
    )
    assert any(c.startswith("a visual analogy: ") for c in captions) and "a puzzle" in captions


def test_eval_phrasings_are_outside_the_training_families(draws):
    shape_then_color = re.compile(
        rf"\b(?:{'|'.join([*world.SHAPES, *PLURALS.values()])}) in "
        rf"(?:{'|'.join(world.COLORS)})\b"
    )

    def held_out_wording(text: str) -> bool:
        text = _normal(text)
        return (
            text.startswith(EVAL_FILLERS)
            or any(f" {c} " in text for c in EVAL_CONJUNCTIONS)
            or bool(shape_then_color.search(text))
        )

    assert not any(held_out_wording(s.caption) for s in draws)
    for i in range(200):
        c = case("phrasing", i, 0, 64, 8)
        assert held_out_wording(c.prompt) and c.prompt != c.judged and parse_caption(c.judged)
    assert held_out_phrasing(parse_caption("a red circle and a blue square"), random.Random(3))


def test_the_tokenizer_reads_capitals_and_final_punctuation_as_the_plain_caption(draws, tok2):
    assert words_of("A RED Circle.") == ["a", "red", "circle"]
    assert torch.equal(
        tok2.encode("A RED CIRCLE POINTING LEFT!")[0], tok2.encode("a red circle pointing left")[0]
    )
    assert tok2.unknown_words("Draw a red triangle pointing left.") == []
    assert tok2.unknown_words("a picture of a red circle") == ["picture"]
    assert (
        max(len(tok2.tokenizer.encode(s.caption).ids) for s in draws) <= 38
    )  # fits a 40-token text


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(seed=st.integers(0, 2**32))
def test_property_v2_captions_round_trip_through_a_v2_tokenizer(tok2, seed):
    """Any draw's caption fits, decodes to itself as the normaliser sees it (lower case, no final punctuation),
    has no unknown word."""
    caption = sample2(seed, W).caption
    ids, truncated = tok2.encode(caption)
    assert not truncated and tok2.decode(ids) == normalise(caption)
    assert tok2.unknown_words(caption) == []


def test_scorer_negatives_are_false_for_their_draws(draws):
    seen: dict[str, int] = {}
    for i, s in enumerate(draws[:400]):
        rng = random.Random(i)
        for kind, text in negative_captions(s, rng).items():
            assert kind in (*KINDS, *KINDS2) and text != s.caption
            seen[kind] = seen.get(kind, 0) + 1
        for kind, x in negative_images(s, rng).items():
            seen[f"image {kind}"] = seen.get(f"image {kind}", 0) + 1
            if (
                isinstance(x, Layout) and seen[f"image {kind}"] < 60
            ):  # the evaluator fails the wrong answer
                assert not judge_image(render_layout(x, W), caption_of_layout(s.layout.caption))[
                    0
                ], s.caption
    assert {
        "direction",
        "transform",
        "rule",
        "color_swap",
        "image answer",
        "image direction",
    } <= set(seen)


def test_clip_trains_on_the_v2_stream_with_its_negatives(draws, tmp_path):
    tok = TextTokenizer.train([s.caption for s in draws[:1500]], length=40)
    images, captions, batch = world2_batch(6, seed=1, rank=0, k=0, size=W)
    assert captions == make_batch(open_source("shapes2", W), 6, 1, 0, 0)[1]
    all_images, texts, image_owner, text_owner = with_negatives2(
        images, batch, 2, 1, random.Random(0)
    )
    assert (
        texts[:6] == captions
        and len(all_images) == 6 + len(image_owner)
        and len(texts) == 6 + len(text_owner)
    )
    args = TrainArgs(
        out=str(tmp_path / "run"),
        steps=2,
        batch_size=6,
        lr=1e-3,
        warmup=1,
        workers=0,
        val_every=2,
        ckpt_every=2,
        log_every=1,
        bf16=False,
    )
    model = make_clip(
        tok, W, embed_dim=32, text_width=32, text_layers=1, text_heads=2, image_widths=(8, 16, 16)
    )
    metrics = train(ClipTask(model, ShapesWorld2(W), tok, args, ClipRecipe(val_pairs=24)), args)
    assert {"i2t_top1", "t2i_top1", "neg_transform"} <= set(metrics)
