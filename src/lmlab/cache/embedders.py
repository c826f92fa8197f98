"""Embedders for the cache: anything with ``name``, ``dim``, ``fingerprint`` and ``encode(texts) -> (n, dim)``
float32 unit rows. A store remembers the fingerprint of the embedder that filled it and refuses another.

- :class:`HashingEmbedder`: feature hashing of words and character trigrams, deterministic and instant
  (tests, and an honest lexical baseline);
- :class:`RandomEmbedder`: an independent random unit vector per distinct text (the AUC-0.5 sanity check);
- :class:`STEmbedder`: a sentence-transformers model (all-MiniLM-L6-v2 by default, or a tuned copy),
  fingerprinted by a hash of its weights.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from lmlab.lm.embed import Embedder


class CacheEmbedder(Protocol):
    name: str

    @property
    def dim(self) -> int: ...

    @property
    def fingerprint(self) -> str: ...

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


def _seed(text: str, salt: str) -> int:
    return int.from_bytes(hashlib.blake2b(f"{salt}\0{text}".encode("utf-8", "surrogatepass"), digest_size=8).digest(),
                          "little")


def _unit(x: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(n, 1e-12)).astype(np.float32)


class HashingEmbedder:
    """Signed feature hashing of lower-cased words and character trigrams (the first ``max_chars`` characters)."""

    def __init__(self, dim: int = 64, seed: int = 0, max_chars: int = 4096):
        self._dim, self.seed, self.max_chars = int(dim), int(seed), int(max_chars)
        self.name = f"hashing-{dim}"

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def fingerprint(self) -> str:
        return f"hashing:v1:dim={self._dim}:seed={self.seed}:max_chars={self.max_chars}"

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self._dim), dtype=np.float64)
        for i, t in enumerate(texts):
            t = t[: self.max_chars].lower()
            feats = re.findall(r"\w+", t) + [t[j:j + 3] for j in range(max(len(t) - 2, 0))]
            for f in feats:
                h = _seed(f, str(self.seed))
                out[i, h % self._dim] += 1.0 if (h >> 32) & 1 else -1.0
            if not feats:
                out[i, 0] = 1.0
        return _unit(out)


class RandomEmbedder:
    """Each distinct text gets its own random unit vector: similarity carries no information (AUC 0.5)."""

    def __init__(self, dim: int = 384, seed: int = 0):
        self._dim, self.seed = int(dim), int(seed)
        self.name = "random"

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def fingerprint(self) -> str:
        return f"random:v1:dim={self._dim}:seed={self.seed}"

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        rows = [np.random.default_rng(_seed(t, f"random{self.seed}")).standard_normal(self._dim) for t in texts]
        return _unit(np.array(rows).reshape(len(texts), self._dim))


def weights_fingerprint(module: Any) -> str:
    """sha256 over a torch module's parameter names, shapes and bytes (16 hex digits)."""
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


class STEmbedder(Embedder):
    """A sentence-transformers model as a cache embedder: :class:`lmlab.lm.embed.Embedder` with a batch size
    and a fingerprint of every weight (a fine-tuned model must never hit another model's store)."""

    def __init__(self, model: Any, name: str = "all-MiniLM-L6-v2", batch_size: int = 64):
        super().__init__(model, name)
        self.batch_size = batch_size
        self._fp: str | None = None

    @property
    def fingerprint(self) -> str:
        if self._fp is None:
            self._fp = f"st:{self.name}:{weights_fingerprint(self.model)}"
        return self._fp

    def invalidate(self) -> None:
        """Call after changing the weights (fine-tuning) so the fingerprint is recomputed."""
        self._fp = None

    def encode(self, texts: Sequence[str], batch_size: int | None = None) -> np.ndarray:
        return super().encode(texts, batch_size or self.batch_size)


def load_st_embedder(path: str | Path | None = None, device: str = "cpu") -> STEmbedder:
    """all-MiniLM-L6-v2 from its wheel (``path=None``, located by :func:`lmlab.lm.embed.load_embedder`) or a saved
    (e.g. fine-tuned) sentence-transformers directory."""
    from lmlab.lm.embed import load_embedder

    e = load_embedder(path, device=device)
    return STEmbedder(e.model, name=e.name)
