"""A word-level tokenizer whose vocabulary is saved with the dataset and with every model that reads text."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import Tensor

PAD, UNK = "[PAD]", "[UNK]"
SPECIALS = (PAD, UNK)
_WORD = re.compile(r"[a-z0-9]+")


def split_words(text: str) -> list[str]:
    """Lower-cased alphanumeric words of ``text`` (punctuation is dropped)."""
    return _WORD.findall(text.lower())


class WordTokenizer:
    """Maps captions to fixed-length int64 id rows; id 0 is padding, id 1 unknown words.

    Args:
        vocab: the token strings, ``vocab[0] == "[PAD]"`` and ``vocab[1] == "[UNK]"``.
        max_len: row length; it includes room for text triggers prepended later (see `caption_budget`).
    """

    def __init__(self, vocab: Sequence[str], max_len: int) -> None:
        if tuple(vocab[:2]) != SPECIALS:
            raise ValueError(f"vocabulary must start with {SPECIALS}")
        if max_len < 1:
            raise ValueError(f"max_len must be positive, got {max_len}")
        self.vocab = list(vocab)
        self.max_len = max_len
        self._ids = {w: i for i, w in enumerate(self.vocab)}

    @classmethod
    def build(cls, captions: Iterable[str], reserve: int) -> WordTokenizer:
        """A tokenizer over the sorted words of ``captions``, with ``reserve`` spare positions per row."""
        caps = list(captions)
        words = sorted({w for c in caps for w in split_words(c)})
        longest = max((len(split_words(c)) for c in caps), default=0)
        return cls([*SPECIALS, *words], longest + reserve)

    @property
    def first_word_id(self) -> int:
        """The smallest id of a real word (ids below it are special tokens)."""
        return len(SPECIALS)

    def __len__(self) -> int:
        return len(self.vocab)

    def encode(self, captions: Sequence[str]) -> Tensor:
        """Encode captions.

        Returns:
            int64 (N, max_len) ids, left-aligned, 0-padded.

        Raises:
            ValueError: a caption has more words than ``max_len``.
        """
        out = torch.zeros(len(captions), self.max_len, dtype=torch.long)
        for row, caption in enumerate(captions):
            ids = [self._ids.get(w, 1) for w in split_words(caption)]
            if len(ids) > self.max_len:
                raise ValueError(f"caption has {len(ids)} words, more than max_len={self.max_len}: {caption!r}")
            out[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        return out

    def decode(self, ids: Tensor) -> str:
        """The words of one id row, padding dropped."""
        return " ".join(self.vocab[i] for i in ids.tolist() if i != 0)

    def caption_budget(self, text: Tensor) -> int:
        """How many tokens can still be prepended to every row of ``text`` (N, L) without truncation."""
        lengths = (text != 0).sum(dim=1)
        return int(self.max_len - (lengths.max() if len(lengths) else 0))

    def fingerprint(self) -> str:
        """SHA-256 of the vocabulary and row length; two tokenizers agree iff their fingerprints do."""
        return hashlib.sha256(("\n".join(self.vocab) + f"\n#{self.max_len}").encode()).hexdigest()

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready description (saved next to model weights)."""
        return {"vocab": self.vocab, "max_len": self.max_len}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> WordTokenizer:
        """Inverse of `to_dict`."""
        return cls(list(d["vocab"]), int(d["max_len"]))
