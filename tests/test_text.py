"""The text tokenizer: fixed length, truncation that is reported, any Unicode, unknown words."""

import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dalle_core import DEFAULT_CHECKPOINT, world
from dalle_core.data import ShapesWorld
from dalle_core.normalise import normalise
from dalle_core.text import TextTokenizer


@pytest.fixture(scope="module")
def tok():
    return TextTokenizer.train(ShapesWorld(64).captions(3000), length=26)


def test_fixed_length_with_bos_eos_pad(tok):
    ids, truncated = tok.encode("a red circle")
    assert ids.shape == (26,) and ids.dtype == torch.long and not truncated
    assert ids[0] == tok.bos_id and tok.eos_id in ids and ids[-1] == tok.pad_id
    assert tok.decode(ids) == "a red circle"


def test_lower_cases_and_normalises(tok):
    assert torch.equal(tok.encode("A RED   Circle")[0], tok.encode("a red circle")[0])
    assert torch.equal(
        tok.encode("ａ red circle")[0], tok.encode("a red circle")[0]
    )  # full-width a (NFKC)


def test_world_captions_fit_without_truncation(tok):
    assert not any(tok.encode(c)[1] for c in ShapesWorld(64).captions(5000))


def test_overlong_text_is_truncated_and_reported(tok):
    ids, truncated = tok.encode("a red circle " * 50)
    assert truncated and ids.shape == (26,) and ids[-1] == tok.eos_id
    with pytest.warns(UserWarning, match="truncated"):
        tok.encode_batch(["a red circle " * 50])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tok.encode_batch(["a red circle"])


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_any_unicode_encodes(tok, text):
    ids, _ = tok.encode(text)
    assert ids.shape == (26,) and int(ids.min()) >= 0 and int(ids.max()) < tok.vocab_size


def test_unknown_words(tok):
    assert tok.unknown_words("a red circle") == []
    assert tok.unknown_words("a Red CAT next to a dog, a cat 🐱") == [
        "cat",
        "next",
        "dog",
        "🐱",
    ]  # "to" is known: "to the left of"


def test_save_load_round_trip(tok, tmp_path):
    tok.save(tmp_path)
    again = TextTokenizer.load(tmp_path)
    assert again.length == tok.length and again.words == tok.words
    assert torch.equal(again.encode("two blue squares")[0], tok.encode("two blue squares")[0])


# ------------------------------------------------------------------ normalisation (spec v2, "Phrasing")


def test_normalise_removes_capitals_spaces_and_final_punctuation_only():
    assert normalise("A red circle.") == normalise("a red circle") == "a red circle"
    assert normalise("  A  RED\tcircle ?! ") == "a red circle"
    assert normalise("a red circle . . .") == normalise("A red circle…") == "a red circle"
    assert (
        normalise("a red circle, a blue square and a cross")
        == "a red circle, a blue square and a cross"
    )
    assert normalise("a visual analogy: in blue") == "a visual analogy: in blue"
    assert normalise("a cat 🐱") == "a cat 🐱"  # a symbol is not punctuation
    assert normalise("?!.") == ""


_END = st.text(alphabet=".!?…,;: ", max_size=4)


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 10**6), data=st.data())
def test_property_capitals_spaces_and_final_punctuation_change_nothing(tok, seed, data):
    """A v1 caption said with any capitals, extra spaces and final punctuation reads as the caption: the same
    token ids (those the tokenizer gave the caption before normalising), the same parse, no unknown word."""
    caption = world.sample(seed).caption
    words = [data.draw(st.sampled_from([w, w.upper(), w.capitalize()])) for w in caption.split(" ")]
    gaps = [data.draw(st.sampled_from([" ", "  ", "\t", " \n "])) for _ in words[1:]]
    said = "".join(w + g for w, g in zip(words, [*gaps, ""], strict=True)) + data.draw(_END)
    ids = [tok.bos_id, *tok.tokenizer.encode(caption).ids, tok.eos_id]
    assert (
        tok.encode(said)[0][: len(ids)].tolist()
        == tok.encode(caption)[0][: len(ids)].tolist()
        == ids
    )
    assert world.parse_caption(said) == world.parse_caption(caption)
    assert tok.unknown_words(said) == [] and tok.known_text(said) == caption


def test_v1_captions_keep_the_shipped_tokenizers_ids():
    """The shipped checkpoint reads every v1 caption as its tokenizer file always did: all of it, the same ids."""
    shipped = TextTokenizer.load(DEFAULT_CHECKPOINT)
    for caption in ShapesWorld(64).captions(2000):
        ids = [shipped.bos_id, *shipped.tokenizer.encode(caption).ids, shipped.eos_id]
        assert shipped.known_text(caption) == caption
        assert shipped.encode(shipped.known_text(caption))[0][: len(ids)].tolist() == ids


# ------------------------------------------------------------------ unknown words


def test_unknown_words_are_left_out_of_the_text_generation_reads(tok):
    assert tok.unknown_words("a red zorp circle") == ["zorp"]
    assert tok.known_text("a red zorp circle") == "a red circle"
    assert torch.equal(
        tok.encode(tok.known_text("a red zorp circle"))[0], tok.encode("a red circle")[0]
    )
    assert tok.known_text("A red circle, a blue blorg square and a zorp cross!") == (
        "a red circle, a blue square and a cross"
    )
    assert tok.known_text("zorp blorg") == ""
    assert tok.known_text("Zorp, a red circle") == "a red circle"  # no mark left at the start
    assert (
        tok.known_text("a red circle, zorp, and a blue square") == "a red circle, and a blue square"
    )
    # no space left before a mark: the ids are those of the text typed without the word
    said = "a red circle zorp, a blue square"
    assert tok.known_text(said) == "a red circle, a blue square"
    assert torch.equal(
        tok.encode(tok.known_text(said))[0], tok.encode("a red circle, a blue square")[0]
    )


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 10**6), data=st.data())
def test_property_unknown_words_anywhere_are_left_out(tok, seed, data):
    caption = world.sample(seed).caption
    words = caption.split(" ")
    for _ in range(data.draw(st.integers(1, 3))):
        unknown = data.draw(st.sampled_from(["zorp", "please", "cat", "🐱", "x9q"]))
        words.insert(data.draw(st.integers(0, len(words))), unknown)
    assert tok.known_text(" ".join(words)) == caption


def test_with_words_knows_new_words_and_keeps_the_ids(tok):
    more = tok.with_words(["a zorp next to a red circle"])
    assert more.unknown_words("a red zorp circle") == [] and more.words >= tok.words
    assert more.fingerprint == tok.fingerprint
