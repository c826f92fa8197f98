"""An LZ78-style dictionary tokenizer (the paper's LZW/LZ78 tokenizer); no library offers one.

**Learning the dictionary** (LZ78 incremental parsing, with the single characters in from the start).
Start with ``D = {every character of the alphabet}`` and a cursor at the start of the training
text. Repeatedly take the longest phrase ``p`` in ``D`` that the text at the cursor starts with,
add ``p + c`` to ``D``, where ``c`` is the character right after ``p``, and move the cursor past
``p + c`` (LZ78: the next phrase starts after the new one; ``advance="lzw"`` moves it past ``p``
only, as LZW does). Stop when ``D`` holds ``vocab_size`` phrases or the text ends. Each new phrase
extends an existing one by one character, so ``D`` is prefix-closed: every prefix of a phrase is
a phrase. The phrases an LZ78 parse creates are the typical long strings of the source, which is
why a unigram model over them approaches the entropy rate (the paper's LZW result).

**Encoding** any string is greedy longest match: at the cursor, emit the longest phrase of ``D``
that the remaining text starts with, and move past it. ``D`` contains every single character, so
every string over the alphabet encodes, and decoding (joining the phrases) gives it back.

Token ids: the alphabet first (``0 .. m-1``), then the phrases in the order they were learned.

>>> tok = LZ78Tokenizer.train("0110101101", vocab_size=16, alphabet="01")
>>> tok.tokens        # parse 0|1 -> 01, then 1|0 -> 10, then 10|1 -> 101; the text ends in "101"
['0', '1', '01', '10', '101']
>>> tok.encode("0110110"), tok.decode(tok.encode("0110110"))    # 01 | 101 | 10
([2, 4, 3], '0110110')
"""

from __future__ import annotations

from typing import Literal

from lmlab.tokenizers.base import Tokenizer


class LZ78Tokenizer(Tokenizer):
    name = "lz78"

    def __init__(self, tokens: list[str], alphabet: str):
        super().__init__(tokens, alphabet)
        self._ids = {t: i for i, t in enumerate(self.tokens)}
        not_closed = [t for t in self.tokens if len(t) > 1 and t[:-1] not in self._ids]
        if not_closed:
            raise ValueError(f"LZ78Tokenizer: the dictionary must be prefix-closed; {not_closed[:3]} lack a prefix")

    @classmethod
    def train(cls, text: str, vocab_size: int, alphabet: str, advance: Literal["lz78", "lzw"] = "lz78") -> LZ78Tokenizer:
        if vocab_size < len(alphabet):
            raise ValueError(f"LZ78Tokenizer: vocab_size ({vocab_size}) must be >= the alphabet size ({len(alphabet)})")
        bad = set(text) - set(alphabet)
        if bad:
            raise ValueError(f"LZ78Tokenizer: characters {sorted(bad)!r} are not in the alphabet {alphabet!r}")
        tokens = list(alphabet)
        known = set(tokens)
        i, n = 0, len(text)
        while len(tokens) < vocab_size and i < n:
            j = i + 1  # text[i:j] is in the dictionary (a single character)
            while j < n and text[i: j + 1] in known:
                j += 1
            if j >= n:  # the text ended inside a known phrase: nothing new to add
                break
            new = text[i: j + 1]
            tokens.append(new)
            known.add(new)
            i = j + 1 if advance == "lz78" else j
        return cls(tokens, alphabet)

    def encode(self, text: str) -> list[int]:
        self._check_alphabet(text)
        ids, known = [], self._ids
        i, n = 0, len(text)
        while i < n:
            j = i + 1
            while j < n and text[i: j + 1] in known:  # prefix-closed: stop at the first miss
                j += 1
            ids.append(known[text[i:j]])
            i = j
        return ids
