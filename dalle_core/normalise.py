"""How text is normalised before anything reads it: the tokenizer, the caption parsers and the check for unknown
words all see a prompt as `normalise` makes it (``shared/spec/shapes-world-v2.md``, "Phrasing": capitals and
final punctuation are normalised away)."""

from __future__ import annotations

import unicodedata

from tokenizers import Regex, normalizers


def normalizer() -> normalizers.Normalizer:
    """NFKC, lower case, runs of white space as one space, no leading or trailing space (the normaliser that a
    trained tokenizer file holds)."""
    return normalizers.Sequence(
        [
            normalizers.NFKC(),
            normalizers.Lowercase(),
            normalizers.Replace(Regex(r"\s+"), " "),
            normalizers.Strip(),
        ]
    )


def normalise(text: str) -> str:
    """The text in `normalizer`'s form, without final punctuation: "A  red circle!" -> "a red circle"."""
    text = normalizer().normalize_str(text)
    end = len(text)
    while end and (text[end - 1] == " " or unicodedata.category(text[end - 1]).startswith("P")):
        end -= 1
    return text[:end]
