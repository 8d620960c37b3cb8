"""The text tokenizer: fixed length, truncation that is reported, any Unicode, unknown words."""

import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dalle_core.data import ShapesWorld
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
