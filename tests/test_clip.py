"""The contrastive scorer: it learns, its loss is symmetric, it is deterministic, loading checks the
tokenizer, and the world's hard negatives are really false for their scenes."""

import random

import numpy as np
import pytest
import torch

from dalle_core import world
from dalle_core.checkpoint import CheckpointError, save_model
from dalle_core.clip import Clip, ClipConfig, load_clip, make_clip
from dalle_core.data import ShapesWorld, make_batch
from dalle_core.text import TextTokenizer
from dalle_core.train_clip import (
    KINDS,
    ClipRecipe,
    ClipTask,
    contrastive_loss,
    degrade,
    hard_negative_loss,
    hard_negatives,
    negative_scenes,
    with_negatives,
    world_batch,
)
from dalle_core.training import TrainArgs, train
from dalle_core.world import check, parse_caption

TINY = {
    "embed_dim": 32,
    "text_width": 32,
    "text_layers": 1,
    "text_heads": 2,
    "image_widths": (8, 16, 16),
}


@pytest.fixture(scope="module")
def tok():
    return TextTokenizer.train(ShapesWorld(64).captions(2000), length=26)


SWAPS = [
    f"a {a} circle {rel} a {b} circle"
    for a, b in [("red", "blue"), ("blue", "red")]
    for rel in ("left of", "above")
]


def _swap_world(reps: int, rng: random.Random) -> tuple[torch.Tensor, list[str]]:
    """Each caption of SWAPS `reps` times with a random 32-pixel scene for it. The captions come in pairs
    with the same words, so a bag of words cannot tell them apart."""
    captions = SWAPS * reps
    images = [world.render(world.scene_for(c, rng.randrange(10**9)), 32) for c in captions]
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255, captions


def test_scores_of_matching_pairs_exceed_the_others_after_a_little_training(tok):
    torch.manual_seed(0)
    model = make_clip(tok, 32, **TINY)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    rng = random.Random(0)
    for _ in range(250):
        images, captions = _swap_world(4, rng)
        loss = contrastive_loss(model(images, tok.encode_batch(captions)), len(captions))
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    images, captions = _swap_world(16, random.Random(1))
    with torch.no_grad():
        scores = model(images, tok.encode_batch(SWAPS))  # (64, 4)
        truth = torch.tensor([SWAPS.index(c) for c in captions])
        assert (scores.argmax(1) == truth).float().mean() > 0.9
        assert torch.allclose(
            scores.gather(1, truth[:, None])[:, 0],
            model.score(images, tok.encode_batch(captions)),
            atol=1e-4,
        )


def test_loss_is_symmetric_and_hard_negatives_only_compete():
    logits = torch.randn(6, 6)
    assert torch.allclose(contrastive_loss(logits, 6), contrastive_loss(logits.T, 6))
    with_negatives = torch.randn(6 + 2, 6 + 4)  # 2 negative images, 4 negative captions
    assert torch.allclose(
        contrastive_loss(with_negatives, 6), contrastive_loss(with_negatives.T, 6)
    )
    text_owner = torch.tensor([0, 0, 1, 5])
    ignored = torch.cat(
        [logits, torch.full((6, 4), -1e4)], 1
    )  # negatives nobody confuses change nothing
    assert torch.allclose(contrastive_loss(ignored, 6), contrastive_loss(logits, 6))
    assert torch.allclose(
        contrastive_loss(torch.cat([ignored, torch.full((2, 10), -1e4)]), 6),
        contrastive_loss(logits, 6),
    )
    assert hard_negative_loss(ignored, 6, text_owner) < 1e-3
    confusing = torch.cat([logits, torch.full((6, 4), 10.0)], 1)
    assert contrastive_loss(confusing, 6) > contrastive_loss(logits, 6)
    assert hard_negative_loss(confusing, 6, text_owner) > 1


def test_encoders_are_deterministic_and_ignore_padding(tok):
    model = make_clip(tok, 32, **TINY).eval()
    images, captions = (
        torch.rand(3, 3, 32, 32),
        ["a red circle", "two blue squares", "a cross above a circle"],
    )
    ids = tok.encode_batch(captions)
    with torch.no_grad():
        assert torch.equal(model.encode_image(images), model.encode_image(images))
        text = model.encode_text(ids)
        assert torch.equal(text, model.encode_text(ids))
        assert torch.allclose(text.norm(dim=-1), torch.ones(3))
        after_eos = ids.clone()
        after_eos[ids == tok.pad_id] = 7  # whatever follows the EOS is not read
        assert torch.allclose(model.encode_text(after_eos), text, atol=1e-6)
        one_for_all = model.score(images, ids[0])
        assert one_for_all.shape == (3,) and torch.allclose(
            one_for_all, model.score(images, ids[:1].expand(3, -1))
        )


def test_loading_checks_the_tokenizer(tok, tmp_path):
    save_model(tmp_path, "clip", make_clip(tok, 32, **TINY))
    assert isinstance(load_clip(tmp_path, tok), Clip)
    longer = TextTokenizer(tok.tokenizer, 32, tok.words)
    with pytest.raises(CheckpointError, match=r"length 26.*length 32"):
        load_clip(tmp_path, longer)
    other = TextTokenizer.train(["a red circle", "two blue squares"], length=26, vocab_size=300)
    with pytest.raises(
        CheckpointError, match=f"expects {tok.vocab_size} text tokens.*has {other.vocab_size}"
    ):
        load_clip(tmp_path, other)
    with pytest.raises(CheckpointError, match="missing"):
        load_clip(tmp_path / "nowhere", tok)


def test_config_checks():
    with pytest.raises(ValueError, match="divisible by text_heads"):
        ClipConfig(text_width=30, text_heads=4)
    with pytest.raises(ValueError, match="image_size"):
        ClipConfig(image_size=40, image_widths=(8, 8, 8, 8))


def test_hard_negatives_are_false_for_their_scene_and_in_the_grammar():
    seen = {kind: 0 for kind in KINDS}
    for seed in range(1500):
        s = world.sample(seed, 32)
        negatives = hard_negatives(s.caption, s.scene, random.Random(seed))
        e = parse_caption(s.caption)
        assert {"color_swap", "count", "shape", "background"} <= set(negatives) <= set(KINDS)
        assert ("relation" in negatives) == bool(e.relation)
        assert ("position" in negatives) == bool(e.groups[0].where)
        for kind, text in negatives.items():
            assert not check(s.scene, parse_caption(text))[0], (s.caption, kind, text)
            seen[kind] += 1
    assert all(seen.values())


def test_hard_negatives_of_a_known_scene():
    scene = world.scene_for("a red circle left of a blue square", seed=3)
    negatives = hard_negatives("a red circle left of a blue square", scene, random.Random(0))
    assert negatives["color_swap"] == "a blue circle left of a red square"
    reversed_ = parse_caption(negatives["relation"])
    assert (world.RELATIONS[reversed_.relation], reversed_.groups[0].shape) in (
        ("right", "circle"),
        ("left", "square"),
    )
    same_color = world.scene_for("a red circle left of a red square", seed=3)
    swap = hard_negatives("a red circle left of a red square", same_color, random.Random(0))[
        "color_swap"
    ]
    assert (
        swap != "a red circle left of a red square"
        and not check(same_color, parse_caption(swap))[0]
    )
    lone = world.scene_for("a circle left of a circle", seed=3)  # reversing it would still be true
    turned = parse_caption(
        hard_negatives("a circle left of a circle", lone, random.Random(0))["relation"]
    )
    assert world.RELATIONS[turned.relation] in ("above", "below")


def test_negative_images_are_false_for_the_caption():
    seen = {}
    for seed in range(500):
        s = world.sample(seed, 32)
        for kind, scene in negative_scenes(s.caption, s.scene, random.Random(seed)).items():
            assert not check(scene, parse_caption(s.caption))[0], (s.caption, kind, scene)
            assert [(o.cx, o.cy, o.s) for o in scene.objects] in (
                [(o.cx, o.cy, o.s) for o in s.scene.objects],
                [(1 - o.cx, o.cy, o.s) for o in s.scene.objects],
                [(o.cx, 1 - o.cy, o.s) for o in s.scene.objects],
            )
            seen[kind] = seen.get(kind, 0) + 1
    assert set(seen) == {"color_swap", "object_swap", "mirror", "shape"}


def test_world_batches_are_the_data_batches_with_their_scenes_and_negatives():
    images, captions, scenes = world_batch(4, seed=5, rank=0, k=2, size=32)
    expected_images, expected_captions = make_batch(ShapesWorld(32), 4, 5, 0, 2)
    assert torch.equal(images, expected_images) and captions == expected_captions
    assert all(check(sc, parse_caption(c))[0] for sc, c in zip(scenes, captions))
    all_images, texts, image_owner, text_owner = with_negatives(
        images, captions, scenes, 2, 1, random.Random(0)
    )
    assert (
        texts[:4] == captions
        and len(texts) == 4 + len(text_owner)
        and len(all_images) == 4 + len(image_owner)
    )
    assert (
        torch.equal(all_images[:4], images)
        and len(text_owner) == 8
        and sorted(set(image_owner)) == image_owner
    )


def test_degrade_keeps_images_in_range():
    x = torch.rand(8, 3, 16, 16)
    y = degrade(x, blur=1.0, noise=0.1)
    assert y.shape == x.shape and 0 <= y.min() and y.max() <= 1 and not torch.equal(x, y)
    assert torch.equal(degrade(x, blur=0.0, noise=0.0), x)


def test_task_trains_validates_and_exports(tok, tmp_path):
    args = TrainArgs(
        out=str(tmp_path / "run"),
        steps=3,
        batch_size=8,
        lr=1e-3,
        warmup=1,
        workers=0,
        val_every=3,
        ckpt_every=3,
        log_every=1,
        bf16=False,
    )
    model = make_clip(tok, 32, **TINY)
    metrics = train(
        ClipTask(
            model,
            ShapesWorld(32),
            tok,
            args,
            ClipRecipe(negatives=2, negative_images=1, val_pairs=32),
        ),
        args,
    )
    assert {f"neg_{k}" for k in ("color_swap", "count", "shape", "background")} <= set(metrics)
    assert {"i2t_top1", "t2i_top1"} <= set(metrics) and all(0 <= v <= 1 for v in metrics.values())
    loaded = load_clip(tmp_path / "run", tok)
    assert loaded.config == model.config
