"""Baseline: TF-IDF of word 1-2 grams + class-balanced logistic regression (C chosen by CV on train).

Saved without pickles: the vectorizer's vocabulary (JSON in the metadata) and idf weights, the
coefficients and the intercept; loading rebuilds an identical scikit-learn ``TfidfVectorizer``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lmlab.moderation.base import C_GRID, DetectorError, StudyDetector, ToxicityScorer, fit_linear_cv

VECTORIZER = {"ngram_range": [1, 2], "min_df": 2, "sublinear_tf": True, "lowercase": True, "max_features": 50000}


class TfidfDetector(ToxicityScorer):
    kind = "tfidf-lr"

    @classmethod
    def from_study(cls, cfg: Any, features: Any = None) -> list[StudyDetector]:
        return [StudyDetector("tfidf", "TF-IDF + LR", lambda: cls(seed=cfg.seed), role="baseline", sweep="TF-IDF + LR",
                              claim_tag="tfidf", report=lambda d: {("baselines", "tfidf"): d.fit_info})]

    def __init__(self, Cs: Sequence[float] = C_GRID, seed: int = 0, vectorizer: dict[str, Any] | None = None):
        self.Cs = tuple(Cs)
        self.seed = seed
        self.params = dict(vectorizer or VECTORIZER)
        self.vec: Any = None
        self.coef = np.zeros(0)
        self.intercept = 0.0
        self.fit_info: dict[str, Any] = {}

    def _make(self, vocabulary: dict[str, int] | None = None) -> Any:
        from sklearn.feature_extraction.text import TfidfVectorizer

        p = dict(self.params)
        p["ngram_range"] = tuple(p["ngram_range"])
        if vocabulary is not None:
            p.pop("max_features", None)
            p.pop("min_df", None)
        return TfidfVectorizer(vocabulary=vocabulary, dtype=np.float64, **p)

    def fit(self, prompts: Sequence[str], y: Any) -> TfidfDetector:
        self.vec = self._make()
        X = self.vec.fit_transform(list(prompts))
        r = fit_linear_cv(X, y, self.Cs, seed=self.seed)
        self.coef, self.intercept = r["coef"], r["intercept"]
        self.fit_info = {"C": r["C"], "cv_average_precision": r["cv_average_precision"], "n_features": int(X.shape[1])}
        return self

    def decision_function(self, prompts: Sequence[str]) -> np.ndarray:
        if self.vec is None:
            raise DetectorError("TfidfDetector is not fitted; call fit(prompts, labels) or load a saved one")
        if isinstance(prompts, str):
            raise TypeError("prompts must be a sequence of strings; wrap a single prompt in a list")
        return np.asarray(self.vec.transform(list(prompts)) @ self.coef).ravel() + self.intercept

    def meta(self) -> dict[str, Any]:
        vocab = {str(k): int(v) for k, v in self.vec.vocabulary_.items()}
        return {"vectorizer": self.params, "vocabulary": vocab, "intercept": self.intercept, "fit_info": self.fit_info}

    def _arrays(self) -> dict[str, np.ndarray]:
        return {"idf": np.asarray(self.vec.idf_, dtype=np.float64), "coef": self.coef}

    @classmethod
    def load(cls, path: str | Path) -> TfidfDetector:
        meta, arr = cls._read(path)
        det = cls(vectorizer=meta["vectorizer"])
        det.vec = det._make(vocabulary=meta["vocabulary"])
        det.vec.idf_ = arr["idf"]
        det.coef, det.intercept = arr["coef"], float(meta["intercept"])
        det.threshold = float(meta.get("threshold", 0.5))
        det.fit_info = meta.get("fit_info", {})
        return det
