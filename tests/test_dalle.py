"""The `Dalle` facade on a real checkpoint (the shipped one unless DALLE_TEST_CHECKPOINT says otherwise)."""

import os

import numpy as np
import pytest
from PIL import Image

from dalle_core import DEFAULT_CHECKPOINT, Dalle, Part, Settings
from dalle_core.checkpoint import CheckpointError
from dalle_core.world import render, sample, scene_for


@pytest.fixture(scope="module")
def model():
    return Dalle(os.environ.get("DALLE_TEST_CHECKPOINT", DEFAULT_CHECKPOINT), device="cpu")


def test_generate_returns_n_best_first(model):
    results = model.generate("a red circle", n=3, candidates=6, seed=1)
    assert len(results) == 3
    scores = [r.score for r in results]
    assert scores == sorted(scores, reverse=True)
    for r in results:
        assert (
            r.image.shape == (model.image_size, model.image_size, 3) and r.image.dtype == np.uint8
        )


def test_same_seed_same_images(model):
    a = model.generate("two blue squares", n=2, candidates=4, seed=7)
    b = model.generate("two blue squares", n=2, candidates=4, seed=7)
    assert all(
        np.array_equal(x.image, y.image) and x.score == y.score for x, y in zip(a, b, strict=True)
    )


def test_stream_previews_then_results(model):
    updates = list(model.generate_stream("a green cross", n=2, candidates=3, seed=0))
    assert [u.rows_done for u in updates] == list(range(1, model.grid + 1))
    assert all(u.results is None for u in updates[:-1]) and len(updates[-1].results) == 2
    assert len(updates[0].previews) == 3
    first = updates[0].previews[0]
    f = model.vae.config.f
    assert (first[f:] == 200).all()  # rows not sampled yet are shown gray


def test_a_batch_of_prompts_gives_each_prompt_its_own_images(model):
    """Several requests in one pass (different prompts, sizes and seeds, the same prompt twice) give each the images
    and scores it gets alone with the same seed: each part draws from its own random generator."""
    parts = [
        Part("a red circle", 4, seed=1),
        Part("two blue squares above a green triangle", 4, seed=2),
        Part("a purple cross", 1, seed=3),
        Part("a red circle", 2, seed=4),
    ]
    updates = list(model.generate_batch_stream(parts, guidance=3.0, top_k=64))
    assert [len(u) for u in updates] == [len(parts)] * model.grid
    assert [len(u.previews) for u in updates[0]] == [4, 4, 1, 2]
    for part, batched in zip(parts, updates[-1], strict=True):
        alone = model.generate(
            part.prompt, n=part.candidates, candidates=part.candidates, seed=part.seed, top_k=64
        )
        assert len(batched.results) == part.candidates
        for a, b in zip(alone, batched.results, strict=True):
            assert np.array_equal(a.image, b.image) and a.score == pytest.approx(b.score, abs=1e-3)


def test_a_batch_refuses_per_part_settings_and_checks_each_part(model):
    with pytest.raises(ValueError, match="each part sets its own seed"):
        model.generate_batch_stream([Part("a red circle")], seed=3)
    with pytest.raises(ValueError, match="prompt is empty"):
        model.generate_batch_stream([Part("a red circle"), Part(" ")])
    with pytest.raises(ValueError, match="at least one part"):
        model.generate_batch_stream([])


def test_generate_and_complete_equal_the_streams_last_update(model):
    """The non-streaming calls skip the previews but not the work: same images, same scores."""
    image = sample(5).image
    pairs = [
        (
            model.generate("a green cross", n=2, candidates=3, seed=0),
            list(model.generate_stream("a green cross", n=2, candidates=3, seed=0))[-1].results,
        ),
        (
            model.complete(image, "a red circle", region=(4, 3), n=2, candidates=3, seed=0),
            list(
                model.complete_stream(
                    image, "a red circle", region=(4, 3), n=2, candidates=3, seed=0
                )
            )[-1].results,
        ),
    ]
    for plain, streamed in pairs:
        assert [r.score for r in plain] == [r.score for r in streamed]
        assert all(np.array_equal(a.image, b.image) for a, b in zip(plain, streamed, strict=True))


def test_complete_keeps_the_outside(model):
    image = sample(5).image
    results = model.complete(image, "a red circle", region=(4, 3), n=2, candidates=3, seed=0)
    y, x = model.rectangle_pixels((4, 3))
    outside = np.ones(image.shape[:2], bool)
    outside[y:, x:] = False
    for r in results:
        assert np.array_equal(r.image[outside], image[outside])


def test_complete_accepts_any_image_and_a_mask(model):
    big = Image.fromarray(sample(3).image).resize((300, 200)).convert("RGBA")
    mask = np.zeros((50, 75), bool)
    mask[30:, 40:] = True
    results = model.complete(big, "a blue square", mask=mask, n=1, candidates=2)
    assert results[0].image.shape == (64, 64, 3)


def test_snap_mask(model):
    g = model.grid
    m = np.zeros((128, 128), np.uint8)
    m[70:90, 100:110] = 255  # painted inside row 4-5, col 6
    assert model.snap_mask(m) == (70 * g // 128, 100 * g // 128)
    rgba = np.zeros((64, 64, 4), np.uint8)
    rgba[63, 63, 3] = 255
    assert model.snap_mask(rgba) == (g - 1, g - 1)
    with pytest.raises(ValueError, match="nothing to edit"):
        model.snap_mask(np.zeros((64, 64)))


@pytest.mark.parametrize("prompt", ["", "   \n\t"])
def test_empty_prompt(model, prompt):
    with pytest.raises(ValueError, match="empty"):
        model.generate(prompt)


def test_odd_prompts_still_work(model):
    results = model.generate("a r\x00ed 🐱 circle " + "x" * 10_000, n=1, candidates=1)
    assert len(results) == 1
    _, notes = model.check_prompt("a red cat " * 100)
    assert any("cat" in n for n in notes) and any("cut" in n for n in notes)


def test_unknown_words_are_named_and_generation_reads_the_prompt_without_them(model):
    """Spec v2, "Phrasing": generation ignores unknown words; capitals and final punctuation change nothing."""
    ids, notes = model.check_prompt("a red zorp circle")
    plain, plain_notes = model.check_prompt("a red circle")
    assert ids.tolist() == plain.tolist() and plain_notes == []
    assert any("zorp" in n for n in notes) and model.unknown_words("a red zorp circle") == ["zorp"]
    said, said_notes = model.check_prompt("A red circle.")
    assert said.tolist() == plain.tolist() and said_notes == []
    # generation and scoring both read the ids of `check_prompt`
    image = render(scene_for("a red circle"))
    assert model.score([image], "a red zorp circle") == model.score([image], "a red circle")


def test_kept_prompt_says_what_the_model_reads(model):
    assert model.kept_prompt("a red circle") is None
    long = (
        "a small red circle above a large blue square and two green triangles to the left of three yellow "
        "diamonds on a white background and a cross"
    )
    kept = model.kept_prompt(long)
    assert (
        kept is not None
        and long.startswith(kept)
        and "cross" not in kept
        and kept.endswith("background")
    )
    assert (
        model.kept_prompt(long.replace("and a cross", "please")) is None
    )  # an unknown word is not read
    _, notes = model.check_prompt(long)
    assert any(f'reads only "{kept}"' in n for n in notes)


def test_vocabulary_groups_the_known_words(model):
    vocabulary = model.vocabulary
    assert list(vocabulary)[:2] == ["colours", "shapes"] and "red" in vocabulary["colours"]
    assert {"circle", "crosses"} <= set(vocabulary["shapes"]) and "left" in vocabulary["positions"]
    words = [w for group in vocabulary.values() for w in group]
    assert len(words) == len(set(words)) and set(words) == {
        w for w in model.tokenizer.words if w.isalnum()
    }
    assert all(words for words in vocabulary.values())


def test_judge_is_a_plain_check_of_world_captions(model):
    caption = "a red circle above a blue square"
    image = render(scene_for(caption, seed=3))
    assert model.judge(image, caption) == (True, "ok")
    ok, why = model.judge(image, "a green circle above a blue square")
    assert not ok and "not green" in why
    assert (
        model.judge(image, "a red zebra") is None
    )  # not a caption of the world's grammar: nothing to check


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"n": 0}, "n must be"),
        ({"n": 11, "candidates": 10}, "n must be"),
        ({"n": -1}, "n must be"),
        ({"n": "abc"}, "integer"),
        ({"candidates": 65}, "candidates"),
        ({"temperature": 0}, "temperature"),
        ({"temperature": float("nan")}, "temperature"),
        ({"temperature": float("inf")}, "temperature"),
        ({"top_k": -3}, "top_k"),
        ({"top_p": 0}, "top_p"),
        ({"top_p": 1.5}, "top_p"),
        ({"guidance": 0.5}, "guidance"),
        ({"seed": -1}, "seed"),
        ({"seed": 2**70}, "seed"),
        ({"seed": 1.5}, "seed"),
    ],
)
def test_bad_settings(kw, match):
    with pytest.raises(ValueError, match=match):
        Settings(**kw)


def test_bad_regions(model):
    img = sample(0).image
    for region in [(8, 0), (-1, 2), (1,), "a", (1.5, 2)]:
        with pytest.raises(ValueError, match="region"):
            model.complete(img, "a red circle", region=region, candidates=1, n=1)
    with pytest.raises(ValueError, match="not both"):
        model.complete(img, "a red circle", candidates=1, n=1)


def test_missing_checkpoint_says_how_to_get_one(tmp_path):
    with pytest.raises(CheckpointError, match="dalle train all"):
        Dalle(tmp_path / "nowhere")
