"""The text tokenizer: byte-level BPE over captions, padded or truncated to a fixed length."""

from __future__ import annotations

import hashlib
import re
import warnings
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from .checkpoint import CheckpointError, read_json, verify, write_bytes, write_json
from .normalise import normalise, normalizer

PAD, BOS, EOS = "[PAD]", "[BOS]", "[EOS]"
_WORD = re.compile(r"[a-z0-9]+|[^\sa-z0-9]")


def words_of(text: str) -> list[str]:
    """The words of a text as the tokenizer sees them (`normalise`)."""
    return _WORD.findall(normalise(text))


class TextTokenizer:
    """Byte-level BPE with a fixed text length: `[BOS] tokens [EOS] [PAD]...`.

    It also remembers the words it was trained on, to point out unknown words in a prompt.
    """

    def __init__(self, tokenizer: Tokenizer, length: int, words: Iterable[str]):
        self.tokenizer = tokenizer
        self.length = length
        self.words = frozenset(words)
        self.pad_id, self.bos_id, self.eos_id = (tokenizer.token_to_id(t) for t in (PAD, BOS, EOS))

    @classmethod
    def train(
        cls, captions: Iterable[str], length: int = 32, vocab_size: int = 512
    ) -> TextTokenizer:
        """Train a BPE tokenizer on captions (as `normalise` makes them)."""
        captions = [normalise(c) for c in captions]
        tok = Tokenizer(models.BPE())
        tok.normalizer = normalizer()
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=[PAD, BOS, EOS],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        tok.train_from_iterator(captions, trainer)
        words = Counter(w for c in captions for w in words_of(c))
        return cls(tok, length, sorted(words))

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size()

    def encode(self, text: str) -> tuple[torch.Tensor, bool]:
        """Token ids of shape (length,) of the text as `normalise` makes it, and whether it was truncated to fit."""
        ids = self.tokenizer.encode(normalise(text)).ids
        room = self.length - 2
        truncated = len(ids) > room
        ids = [self.bos_id, *ids[:room], self.eos_id]
        ids += [self.pad_id] * (self.length - len(ids))
        return torch.tensor(ids, dtype=torch.long), truncated

    def encode_batch(self, texts: list[str], *, warn: bool = True) -> torch.Tensor:
        """Token ids of shape (len(texts), length); warns when a text was truncated."""
        encoded = [self.encode(t) for t in texts]
        if warn and any(tr for _, tr in encoded):
            warnings.warn(f"text longer than {self.length - 2} tokens was truncated", stacklevel=2)
        return torch.stack([ids for ids, _ in encoded])

    def decode(self, ids: torch.Tensor) -> str:
        """The text of a row of token ids (special tokens dropped)."""
        return self.tokenizer.decode([int(i) for i in ids], skip_special_tokens=True).strip()

    @property
    def fingerprint(self) -> str:
        """A digest of the vocabulary, merges and text length: equal fingerprints give equal ids."""
        return hashlib.sha256(f"{self.length}|{self.tokenizer.to_str()}".encode()).hexdigest()[:16]

    def unknown_words(self, text: str) -> list[str]:
        """The words of `text` never seen in training, in order, without repeats."""
        return list(dict.fromkeys(w for w in words_of(text) if w not in self.words))

    def with_words(self, captions: Iterable[str]) -> TextTokenizer:
        """The same tokenizer (the same ids) knowing also the words of these captions, e.g. those a model is
        fine-tuned on."""
        seen = {w for c in captions for w in words_of(c)}
        return TextTokenizer(self.tokenizer, self.length, self.words | seen)

    def known_text(self, text: str) -> str:
        """The text without its unknown words, normalised: "A red zorp circle." -> "a red circle"; a mark
        they leave with no word before it goes too: "Zorp, a red circle" -> "a red circle", and so does the space
        before a mark: "a red circle zorp, a blue square" -> "a red circle, a blue square"."""
        text = normalise(text)
        kept, end, after_word = [], 0, False
        for m in _WORD.finditer(text):
            is_word = m[0][0].isalnum()
            keep = m[0] in self.words and (is_word or after_word)
            kept += [text[end : m.start()], m[0] if keep else "\0"]
            after_word, end = (is_word if keep else after_word), m.end()
        joined = re.sub(
            r"\s*\0\s*(?=[^\w\s])", "", "".join(kept) + text[end:]
        )  # "circle zorp," -> "circle,"
        return normalise(joined.replace("\0", " "))

    def save(self, directory: str | Path) -> None:
        """Write `text.json` (length and known words), then `tokenizer.json` (the BPE), each atomically:
        a directory with `tokenizer.json` has both."""
        directory = Path(directory)
        write_json(directory / "text.json", {"length": self.length, "words": sorted(self.words)})
        write_bytes(directory / "tokenizer.json", self.tokenizer.to_str(pretty=True))

    @classmethod
    def load(cls, directory: str | Path) -> TextTokenizer:
        """Load what `save` wrote; CheckpointError naming the file if one is missing or damaged."""
        directory = Path(directory)
        meta, path = read_json(directory / "text.json"), directory / "tokenizer.json"
        if not isinstance(meta, dict) or not {"length", "words"} <= set(meta):
            raise CheckpointError(f"{directory / 'text.json'} has no 'length' and 'words'")
        if not path.exists():
            raise CheckpointError(f"missing file {path}")
        verify(path)
        try:
            tokenizer = Tokenizer.from_file(str(path))
        except Exception as e:  # the tokenizers library raises plain Exceptions
            raise CheckpointError(f"{path} is damaged or not a tokenizer file ({e})") from e
        return cls(tokenizer, meta["length"], meta["words"])
