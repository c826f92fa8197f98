"""First-response-token logits of a chat LM, one prefill per prompt, batched, cached on disk.

MULI reads the logits the model assigns to the first token of its reply: format the user's text
with the model's chat template and an opened, empty assistant turn (``lm.chat_prompt``), run one
forward pass (no generation, unembedding at the last position only), keep the last-position
logits (vocabulary-sized). :func:`log_odds` turns them into the paper's features.

Long prompts: the user text is cut to its first ``max_tokens`` tokens (``None``: no cut) before
the template is applied, so the template's closing tokens and the opened assistant turn are never
cut off.

Cache: one ``.npy`` file of float32 logits per prompt under
``cache_dir/<model fingerprint>/<template key>/<sha256 of the text>.npy``. The model fingerprint
hashes the model's name, vocabulary size, parameter count and a strided sample of its first and
last weight tensors (two random models with the same name do not share a cache); the template key
hashes the chat template, the suffix, the system prompt and ``max_tokens``. Files are written
atomically, so a killed extraction resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lmlab.io import atomic_path, cache_root

LOG_EPS = 1e-16  # the paper's code bounds p and 1 - p away from 0 with this before the log


def default_cache_dir() -> Path:
    return cache_root() / "first-token"


def model_fingerprint(lm: Any) -> str:
    """A short hash identifying the model's weights (name, vocab, sizes, sampled weight values)."""
    h = hashlib.sha256()
    h.update(str(getattr(lm, "name", type(lm).__name__)).encode())
    tok = getattr(lm, "tokenizer", None)
    h.update(str(len(tok) if tok is not None else -1).encode())
    model = getattr(lm, "model", None)
    if model is not None and hasattr(model, "parameters"):
        params = list(model.parameters())
        h.update(str(sum(p.numel() for p in params)).encode())
        for p in (params[0], params[-1]):
            flat = p.detach().reshape(-1)
            step = max(1, flat.numel() // 4096)
            h.update(flat[::step].float().cpu().numpy().tobytes())
    else:  # DummyLM and other weightless backends: their seed and vocabulary define them
        h.update(str(getattr(lm, "seed", "")).encode() + str(getattr(lm, "vocab_size", "")).encode())
    return h.hexdigest()[:16]


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


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class FirstTokenFeatures:
    """First-token logits for texts, through ``lm`` (an :class:`lmlab.lm.LM`), cached on disk.

    >>> from lmlab.lm.dummy import DummyLM
    >>> feats = FirstTokenFeatures(DummyLM(), cache_dir=None)
    >>> feats.logits(["hello", "world"]).shape
    (2, 256)
    """

    def __init__(self, lm: Any, template: PromptTemplate | None = None, cache_dir: str | Path | None = "default",
                 batch_size: int = 8, progress: bool = False, share_prefix: bool = True):
        self.lm = lm
        self.share_prefix = share_prefix
        self.template = template or PromptTemplate()
        self.batch_size = batch_size
        self.progress = progress
        self.model_key = model_fingerprint(lm)
        self.template_key = self.template.key(lm)
        if cache_dir == "default":
            cache_dir = default_cache_dir()
        self.cache = Path(cache_dir) / self.model_key / self.template_key if cache_dir is not None else None
        self.stats = {"computed": 0, "cached": 0}

    @property
    def meta(self) -> dict[str, Any]:
        return {"model": str(getattr(self.lm, "name", "")), "model_fingerprint": self.model_key,
                "template": self.template.to_dict(), "template_key": self.template_key}

    def _path(self, text: str) -> Path | None:
        return self.cache / f"{text_hash(text)}.npy" if self.cache is not None else None

    def logits(self, texts: Sequence[str]) -> np.ndarray:
        """(n, vocab) float32 logits of the reply's first token for each text."""
        if isinstance(texts, str):
            raise TypeError("texts must be a sequence of strings; wrap a single text in a list")
        out: list[np.ndarray | None] = [None] * len(texts)
        todo = []
        for i, t in enumerate(texts):
            p = self._path(t)
            if p is not None and p.exists():
                try:
                    out[i] = np.load(p, allow_pickle=False)
                    self.stats["cached"] += 1
                    continue
                except (ValueError, OSError, EOFError):
                    p.unlink(missing_ok=True)  # a damaged cache file is recomputed
            todo.append(i)
        if todo:
            if self.cache is not None:
                self.cache.mkdir(parents=True, exist_ok=True)
            for i, row in self._compute([texts[i] for i in todo], todo):
                out[i] = row
                p = self._path(texts[i])
                if p is not None:
                    _save_atomic(p, row)
                self.stats["computed"] += 1
        if not out:
            return np.zeros((0, self.vocab_size), dtype=np.float32)
        return np.stack(out).astype(np.float32)  # type: ignore[arg-type]

    @property
    def vocab_size(self) -> int:
        return len(self.lm.tokenizer)

    def _compute(self, texts: list[str], ids: list[int]) -> Any:
        """Yield (index, logits) in batches of similar length (sorted by token count: less padding).

        Chat prompts share a long prefix (system prompt, user-turn header: about 30 of SmolLM2's tokens).
        With ``share_prefix`` its key/value cache is computed once and every batch runs only the rest, the
        same causal computation (a test checks the logits against the plain forward pass).
        """
        import torch

        prompts = [self.template.format(self.lm, t) for t in texts]
        has_ids = hasattr(self.lm, "forward_ids") and hasattr(self.lm, "encode")
        seqs = [self.lm.encode(p) for p in prompts] if has_ids else None
        order = np.argsort([len(s) for s in seqs], kind="stable") if seqs is not None else np.arange(len(prompts))
        batches = [order[i:i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        prefix: list[int] = []
        if seqs is not None and self.share_prefix and len(seqs) > 1 and hasattr(self.lm, "model"):
            prefix = common_prefix(seqs)
            if len(prefix) < 4:
                prefix = []
        past = self._prefix_cache(prefix) if prefix else None
        if self.progress:
            from tqdm import tqdm

            batches = tqdm(batches, desc="first-token logits", unit="batch", leave=False)
        for b in batches:
            with torch.no_grad():
                if past is not None:
                    rows = self._forward_after_prefix(past, len(prefix), [seqs[j][len(prefix):] for j in b])  # type: ignore[index]
                elif seqs is not None:
                    logits, _ = self.lm.forward_ids([seqs[j] for j in b], last_only=True)
                    rows = logits[:, -1]
                else:
                    rows = self.lm.next_token_logits([prompts[j] for j in b])
            rows = rows.float().cpu().numpy()
            for k, j in enumerate(b):
                yield ids[j], rows[k]

    def _prefix_cache(self, prefix: list[int]) -> Any:
        import torch

        with torch.no_grad():
            out = self.lm.model(input_ids=torch.tensor([prefix], device=self.lm.device), use_cache=True)
        # transformers >= 5.2x names it `cache` (older: `past_key_values`)
        return getattr(out, "cache", None) or getattr(out, "past_key_values", None)

    def _forward_after_prefix(self, past: Any, p: int, rest: list[list[int]]) -> Any:
        """Logits at the last position of prefix + rest[i], reusing the prefix's key/value cache."""
        import copy

        import torch

        ids, mask, _ = self.lm.pad_left(rest)
        B = ids.shape[0]
        cache = copy.deepcopy(past)
        cache.batch_repeat_interleave(B)
        full = torch.cat([torch.ones((B, p), dtype=mask.dtype, device=mask.device), mask], dim=1)
        pos = p + (mask.cumsum(-1) - 1).clamp_min(0)
        import inspect

        key = "cache" if "cache" in inspect.signature(self.lm.model.forward).parameters else "past_key_values"
        kwargs: dict[str, Any] = dict(input_ids=ids, attention_mask=full, position_ids=pos, use_cache=True)
        kwargs[key] = cache
        if self.lm._keeps_logits:
            kwargs["logits_to_keep"] = 1
        return self.lm.model(**kwargs).logits[:, -1].float()


def common_prefix(seqs: Sequence[Sequence[int]]) -> list[int]:
    """The longest common token prefix, shortened so every sequence keeps at least one token after it."""
    first = list(seqs[0])
    n = min(len(s) for s in seqs) - 1
    k = 0
    while k < n and all(s[k] == first[k] for s in seqs):
        k += 1
    return first[:k]


def _save_atomic(path: Path, arr: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        np.save(tmp, np.asarray(arr, dtype=np.float32), allow_pickle=False)


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
