"""Character-level tokenization: the dictionary is the alphabet, one token per character."""

from __future__ import annotations

from lmlab.tokenizers.base import Tokenizer


class CharTokenizer(Tokenizer):
    """One token per character of the alphabet.

    >>> CharTokenizer.train("", 2, "01").encode("0110")
    [0, 1, 1, 0]
    """

    name = "char"

    def __init__(self, alphabet: str):
        super().__init__(list(alphabet), alphabet)
        self._ids = {c: i for i, c in enumerate(alphabet)}

    @classmethod
    def train(cls, text: str, vocab_size: int, alphabet: str) -> CharTokenizer:
        """Nothing to learn; ``vocab_size`` is ignored (it is always ``len(alphabet)``)."""
        return cls(alphabet)

    def encode(self, text: str) -> list[int]:
        self._check_alphabet(text)
        return [self._ids[c] for c in text]
