"""DummyLM: a deterministic fake language model for testing pipelines without weights.

Characters are tokens (code points modulo the vocabulary). The next-token logits are a fixed
pseudo-random function of the last two tokens and the seed, so every method agrees with every
other (``logprobs`` sums the same log-softmax that ``next_token_logits`` returns; ``generate`` is
greedy or samples from it) and repeated calls give identical answers.

>>> lm = DummyLM()
>>> lm.generate(["abc"], max_new_tokens=5) == lm.generate(["abc"], max_new_tokens=5)
True
>>> lp = lm.logprobs(["ab"], ["c"])
>>> bool(abs(lp[0] - torch.log_softmax(lm.next_token_logits(["ab"])[0], -1)[ord("c")]) < 1e-6)
True
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from lmlab.lm.base import LM, check_pairs, model_fingerprint


class CharTokenizer:
    """The smallest tokenizer the LM interface needs: one token per character, ids = code point % vocab."""

    chat_template = None
    bos_token = None
    eos_token = "\x00"
    pad_token_id = 0
    eos_token_id = 0

    def __init__(self, vocab_size: int = 256):
        self.vocab_size = vocab_size

    def __len__(self) -> int:
        return self.vocab_size

    def encode(self, text: str) -> list[int]:
        return [ord(c) % self.vocab_size for c in text]

    def __call__(self, text: str, **_: Any) -> dict[str, list[int]]:
        return {"input_ids": self.encode(text)}

    def decode(self, ids: Sequence[int]) -> str:
        return "".join(chr(int(i)) for i in ids)


class DummyLM(LM):
    name = "dummy"
    capabilities = frozenset({"text", "logits"})
    backend = "DummyLM"

    @property
    def fingerprint(self) -> str:
        return model_fingerprint(self.name, self._tokenizer, extra=f"{self.seed}{self.vocab_size}")

    def __init__(self, vocab_size: int = 256, seed: int = 0):
        self._tokenizer = CharTokenizer(vocab_size)
        self.vocab_size = vocab_size
        self.seed = seed

    @property
    def tokenizer(self) -> CharTokenizer:
        return self._tokenizer

    def _logits(self, ids: Sequence[int]) -> torch.Tensor:
        a = ids[-1] if ids else 0
        b = ids[-2] if len(ids) > 1 else 0
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + a * 65_537 + b)
        return torch.randn(self.vocab_size, generator=g) * 3.0

    def next_token_logits(self, prompts: Sequence[str]) -> torch.Tensor:
        if isinstance(prompts, str):
            raise TypeError("prompts must be a sequence of strings; wrap a single prompt in a list")
        if not prompts:
            return torch.empty(0, self.vocab_size)
        return torch.stack([self._logits(self._tokenizer.encode(p)) for p in prompts])

    def logprobs(self, prompts: Sequence[str], completions: Sequence[str], per_token: bool = False) -> Any:
        check_pairs(prompts, completions)
        out = []
        for p, c in zip(prompts, completions):
            ids, cont = self._tokenizer.encode(p), self._tokenizer.encode(c)
            if not cont:
                raise ValueError("empty completion: logprobs needs at least one completion token")
            lps = []
            for t in cont:
                lps.append(torch.log_softmax(self._logits(ids), -1)[t])
                ids = ids + [t]
            out.append(torch.stack(lps))
        return out if per_token else torch.stack([x.sum() for x in out])

    def generate(self, prompts: Sequence[str], max_new_tokens: int = 32, temperature: float = 0.0,
                 top_p: float = 1.0, seed: int | None = None, stop: Sequence[str] = ()) -> list[str]:
        g = torch.Generator().manual_seed(self.seed if seed is None else seed)
        texts = []
        for p in prompts:
            ids = self._tokenizer.encode(p)
            new: list[int] = []
            for _ in range(max_new_tokens):
                logits = self._logits(ids + new)
                if temperature > 0:
                    t = int(torch.multinomial(torch.softmax(logits / temperature, -1), 1, generator=g))
                else:
                    t = int(logits.argmax())
                new.append(t)
            text = self._tokenizer.decode(new)
            for s in stop:
                if s in text:
                    text = text[: text.index(s)]
            texts.append(text)
        return texts
