"""First-response-token logits of a chat LM, one prefill per prompt, batched, cached on disk.

MULI reads the logits the model assigns to the first token of its reply: format the user's text
with the model's chat template and an opened, empty assistant turn (``lm.chat_prompt``), run one
forward pass (no generation, unembedding at the last position only), keep the last-position
logits (vocabulary-sized). :func:`log_odds` turns them into the paper's features.

Long prompts: the user text is cut to its first ``max_tokens`` tokens (``None``: no cut) before
the template is applied, so the template's closing tokens and the opened assistant turn are never
cut off.

Cache: the rows go through :class:`lmlab.lm.caching.CachingLM` (one SQLite file,
``cache_dir/first-token.sqlite``), keyed by the model's fingerprint (``lm.fingerprint``: name, vocabulary size,
parameter count and a strided sample of its first and last weight tensors, so two random models with the same
name do not share entries), the template (its fields and the chat template), the source of this module and of
the LM backend, and the formatted prompt. Batches are committed as they finish, so a killed extraction resumes
where it stopped; a changed key is recomputed with one logged line saying what changed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lmlab.io import cache_root
from lmlab.lm.hf import common_prefix  # noqa: F401 - re-exported: part of this module's interface

LOG_EPS = 1e-16  # the paper's code bounds p and 1 - p away from 0 with this before the log


def default_cache_dir() -> Path:
    return cache_root()


def model_fingerprint(lm: Any) -> str:
    """The model's fingerprint (``lm.fingerprint``), kept as a function for saved-detector checks."""
    return str(lm.fingerprint)


@dataclass(frozen=True)
class PromptTemplate:
    """How a user text becomes the string whose next token is the reply's first token."""

    kind: str = "chat"  # "chat": the model's chat template with the assistant turn opened; "raw": the text itself
    suffix: str = ""  # appended after the template (the paper's Llama-2 setup appends " " after "[/INST]")
    system: str | None = None
    max_tokens: int | None = 512  # the user text is cut to this many tokens before templating

    def __post_init__(self) -> None:
        from lmlab.config import ConfigError

        if self.kind not in ("chat", "raw"):
            raise ConfigError(f"PromptTemplate.kind: {self.kind!r}; use 'chat' or 'raw'")
        if self.max_tokens is not None and self.max_tokens < 1:
            raise ConfigError(f"PromptTemplate.max_tokens must be >= 1 or None, got {self.max_tokens}")

    def key(self, lm: Any) -> str:
        tok = getattr(lm, "tokenizer", None)
        chat = getattr(tok, "chat_template", None) if self.kind == "chat" else None
        blob = json.dumps({"kind": self.kind, "suffix": self.suffix, "system": self.system,
                           "max_tokens": self.max_tokens, "chat_template": chat}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "suffix": self.suffix, "system": self.system, "max_tokens": self.max_tokens}

    def truncate(self, lm: Any, text: str) -> str:
        if self.max_tokens is None:
            return text
        tok = lm.tokenizer
        ids = tok(text, add_special_tokens=False)["input_ids"] if callable(tok) else tok.encode(text)
        if len(ids) <= self.max_tokens:
            return text
        return tok.decode(list(ids)[: self.max_tokens])

    def format(self, lm: Any, text: str) -> str:
        text = self.truncate(lm, text)
        body = lm.chat_prompt(text, system=self.system) if self.kind == "chat" else text
        return body + self.suffix


class FirstTokenFeatures:
    """First-token logits for texts, through ``lm`` (an :class:`lmlab.lm.LM` with logits), cached on disk.

    >>> from lmlab.lm.dummy import DummyLM
    >>> feats = FirstTokenFeatures(DummyLM(), cache_dir=None)
    >>> feats.logits(["hello", "world"]).shape
    (2, 256)
    """

    def __init__(self, lm: Any, template: PromptTemplate | None = None, cache_dir: str | Path | None = "default",
                 batch_size: int = 8, progress: bool = False, share_prefix: bool = True):
        from lmlab.lm.base import require
        from lmlab.lm.caching import CachingLM

        self.lm = require(lm, ("logits",))
        self.share_prefix = share_prefix
        self.template = template or PromptTemplate()
        self.batch_size = batch_size
        self.progress = progress
        self.model_key = model_fingerprint(lm)
        self.template_key = self.template.key(lm)
        if cache_dir == "default":
            cache_dir = default_cache_dir()
        self.cached_lm = CachingLM(lm, kind="first-token", config={**self.template.to_dict(), "key": self.template_key},
                                   code=(__name__,), root=cache_dir, batch_size=batch_size, progress=progress,
                                   share_prefix=share_prefix)

    @property
    def stats(self) -> dict[str, int]:
        return self.cached_lm.stats

    def stage(self) -> dict[str, Any]:
        """For ``summary.json``'s ``stages``: rows computed now or reused, and the cache key (model, template, code)."""
        return self.cached_lm.stage()

    @property
    def cache(self) -> Path | None:
        """The SQLite file holding the cached rows (None: no cache)."""
        return self.cached_lm._logits.path

    @property
    def meta(self) -> dict[str, Any]:
        return {"model": str(self.lm.name), "model_fingerprint": self.model_key,
                "template": self.template.to_dict(), "template_key": self.template_key}

    def logits(self, texts: Sequence[str]) -> np.ndarray:
        """(n, vocab) float32 logits of the reply's first token for each text."""
        if isinstance(texts, str):
            raise TypeError("texts must be a sequence of strings; wrap a single text in a list")
        if not texts:
            return np.zeros((0, self.vocab_size), dtype=np.float32)
        prompts = [self.template.format(self.lm, t) for t in texts]
        return self.cached_lm.next_token_logits(prompts).numpy().astype(np.float32)

    @property
    def vocab_size(self) -> int:
        return len(self.lm.tokenizer)


def log_odds(logits: np.ndarray) -> np.ndarray:
    """The paper's features: f = log p - log(1 - p), p = softmax(logits), p and 1 - p bounded below by 1e-16.

    Computed in float64 from log-softmax (1 - p as -expm1(log p)), then returned as float32.
    """
    x = np.asarray(logits, dtype=np.float64)
    x = x - x.max(axis=-1, keepdims=True)
    logp = x - np.log(np.exp(x).sum(axis=-1, keepdims=True))
    p = np.exp(logp)
    log_p = np.log(np.maximum(p, LOG_EPS))
    log_1mp = np.log(np.maximum(-np.expm1(logp), LOG_EPS))
    return (log_p - log_1mp).astype(np.float32)
