"""Baseline: sentence embeddings (all-MiniLM-L6-v2 by default, ``lmlab.lm.embed``) + class-balanced
logistic regression (C chosen by CV on the training set). This is an external detector: a second
model run next to the LLM, which MULI claims to beat using the LLM's own first-token logits.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lmlab.moderation.base import C_GRID, DetectorError, StudyDetector, ToxicityScorer, fit_linear_cv


class EmbeddingDetector(ToxicityScorer):
    kind = "embed-lr"
    inputs = "embedding"

    @classmethod
    def from_study(cls, cfg: Any, features: Any = None) -> list[StudyDetector]:
        label = "MiniLM embedding + LR"
        return [StudyDetector("embed", label, lambda: cls(seed=cfg.seed, cache_dir=cfg.cache_dir or "default"),
                              role="baseline", sweep=label,
                              claim_tag="embedding", report=lambda d: {("baselines", "embed"): d.fit_info})]

    def fit_inputs(self, X: np.ndarray, y: Any) -> EmbeddingDetector:
        return self.fit_embeddings(X, y)

    def decision_inputs(self, X: np.ndarray) -> np.ndarray:
        return self.decision_embeddings(X)

    def __init__(self, embedder: Any = None, embedder_path: str | None = None, Cs: Sequence[float] = C_GRID,
                 seed: int = 0, cache_dir: str | Path | None = None):
        self.embedder = embedder
        self.cache_dir = cache_dir  # None: no cache; "default": lmlab.io.cache_root(); else a directory
        self.embedder_path = embedder_path  # None: the default MiniLM wheel
        self.Cs = tuple(Cs)
        self.seed = seed
        self.coef = np.zeros(0)
        self.intercept = 0.0
        self.fit_info: dict[str, Any] = {}

    def _emb(self) -> Any:
        if self.embedder is None:
            from lmlab.lm.embed import load_embedder

            self.embedder = load_embedder(self.embedder_path)
        return self.embedder

    def embed(self, prompts: Sequence[str]) -> np.ndarray:
        """(n, dim) unit-norm embeddings; with ``cache_dir``, each text's row is cached under the embedder's
        fingerprint (:class:`lmlab.io.ArtifactCache`, ``embeddings.sqlite``)."""
        if isinstance(prompts, str):
            raise TypeError("prompts must be a sequence of strings; wrap a single prompt in a list")
        prompts = list(prompts)
        emb = self._emb()
        if self.cache_dir is None or not prompts:
            return emb.encode(prompts)
        from lmlab.io import ArtifactCache

        cache = ArtifactCache("embeddings", model=emb.fingerprint, code=("lmlab.lm.embed",),
                              root=None if self.cache_dir == "default" else self.cache_dir, label=str(emb.name))
        rows = cache.map(prompts, lambda idx: [(idx, list(emb.encode([prompts[i] for i in idx])))])
        self.cache_stats = cache.stats
        self.cache_stage = cache.stage()  # for summary.json's stages
        return np.stack(rows).astype(np.float32)

    def fit_embeddings(self, X: np.ndarray, y: Any) -> EmbeddingDetector:
        r = fit_linear_cv(X, y, self.Cs, seed=self.seed)
        self.coef, self.intercept = r["coef"], r["intercept"]
        self.fit_info = {"C": r["C"], "cv_average_precision": r["cv_average_precision"], "dim": int(X.shape[1])}
        return self

    def fit(self, prompts: Sequence[str], y: Any) -> EmbeddingDetector:
        return self.fit_embeddings(self.embed(prompts), y)

    def decision_embeddings(self, X: np.ndarray) -> np.ndarray:
        if X.shape[1] != len(self.coef):
            raise DetectorError(f"EmbeddingDetector: embeddings of dim {X.shape[1]}, detector expects {len(self.coef)}")
        return np.asarray(X, dtype=np.float64) @ self.coef + self.intercept

    def decision_function(self, prompts: Sequence[str]) -> np.ndarray:
        return self.decision_embeddings(self.embed(prompts))

    def meta(self) -> dict[str, Any]:
        return {"embedder": getattr(self.embedder, "name", None), "embedder_path": self.embedder_path,
                "intercept": self.intercept, "fit_info": self.fit_info}

    def _arrays(self) -> dict[str, np.ndarray]:
        return {"coef": self.coef}

    @classmethod
    def load(cls, path: str | Path, embedder: Any = None) -> EmbeddingDetector:
        meta, arr = cls._read(path)
        if embedder is not None and meta.get("embedder") and getattr(embedder, "name", None) != meta["embedder"]:
            raise DetectorError(f"detector {path} was trained on embeddings of {meta['embedder']!r}, "
                                f"not {getattr(embedder, 'name', None)!r}")
        det = cls(embedder, embedder_path=meta.get("embedder_path"))
        det.coef, det.intercept = arr["coef"], float(meta["intercept"])
        det.threshold = float(meta.get("threshold", 0.5))
        det.fit_info = meta.get("fit_info", {})
        return det
