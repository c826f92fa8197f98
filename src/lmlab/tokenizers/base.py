"""The tokenizer interface: a dictionary of strings, an encoder and a decoder (the paper's T = (D, enc, dec)).

Every tokenizer here works over a fixed alphabet (the characters of a Markov source), always
holds every single character of it, and round-trips exactly: ``decode(encode(s)) == s`` for any
string ``s`` over the alphabet. Token ids are ``0 .. vocab_size - 1`` and ``tokens[i]`` is the
string of id ``i``, so the number of characters a token sequence covers is a lookup.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import ClassVar

import numpy as np


class Tokenizer(ABC):
    """``train`` learns a dictionary from text; ``encode``/``decode`` map strings to ids and back."""

    name: ClassVar[str]

    def __init__(self, tokens: Sequence[str], alphabet: str):
        if len(set(tokens)) != len(tokens):
            raise ValueError(f"{type(self).__name__}: the dictionary has duplicate tokens")
        missing = [c for c in alphabet if c not in set(tokens)]
        if missing:
            raise ValueError(f"{type(self).__name__}: the dictionary lacks single characters {missing}")
        self.tokens: list[str] = list(tokens)
        self.alphabet = alphabet
        self.token_lengths = np.array([len(t) for t in self.tokens], dtype=np.int64)

    @classmethod
    @abstractmethod
    def train(cls, text: str, vocab_size: int, alphabet: str) -> Tokenizer:
        """Learn a dictionary of at most ``vocab_size`` tokens (single characters included) from ``text``."""

    @abstractmethod
    def encode(self, text: str) -> list[int]:
        """The token ids of ``text``; raises ValueError on a character outside the alphabet."""

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [self.encode(t) for t in texts]

    def decode(self, ids: Sequence[int]) -> str:
        return "".join(self.tokens[i] for i in ids)

    @property
    def vocab_size(self) -> int:
        return len(self.tokens)

    def n_chars(self, ids: Sequence[int]) -> int:
        """Characters that ``ids`` decode to (without decoding)."""
        return int(self.token_lengths[np.asarray(ids, dtype=np.int64)].sum()) if len(ids) else 0

    def fingerprint(self) -> str:
        """A short hash of the dictionary (id order included): checkpoints record it, resume checks it."""
        return hashlib.sha256("\x00".join(self.tokens).encode()).hexdigest()[:16]

    def _check_alphabet(self, text: str) -> None:
        bad = set(text) - set(self.alphabet)
        if bad:
            raise ValueError(f"{type(self).__name__}: characters {sorted(bad)!r} are not in the alphabet {self.alphabet!r}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(vocab_size={self.vocab_size}, alphabet={self.alphabet!r})"
