"""Per-model k-nearest-neighbour correctness predictor (the paper's KNN baseline, k = 131 on validation).

The reference code fits one ``sklearn.neighbors.KNeighborsClassifier`` per model over the question
embeddings. All models share the same questions, so the neighbours of a question are the same for every
model: we find them once (scikit-learn's ``NearestNeighbors``; cosine distance by default, ``metric="euclidean"``
is the reference code's, which the EmbedLLM study uses) and average each model's
labels over them. With uniform weights and odd k that is exactly the per-model classifier's vote, and its
``predict_proba``; it is M times cheaper.
"""

from __future__ import annotations

import numpy as np

from typing import Any

from lmlab.routing.base import Router
from lmlab.routing.data import MISSING, CorrectnessMatrix

PAPER_K = 131


class KNNRouter(Router):
    name = "knn"
    needs_features = True
    tuned = "k"

    @classmethod
    def from_study(cls, cfg: Any) -> KNNRouter:
        return cls(cfg.knn_k, getattr(cfg, "knn_metric", "cosine"))

    @classmethod
    def candidates(cls, cfg: Any) -> dict[Any, KNNRouter]:
        return {k: cls(k, getattr(cfg, "knn_metric", "cosine")) for k in cfg.knn_k_grid}

    def __init__(self, k: int = PAPER_K, metric: str = "cosine") -> None:
        super().__init__()
        if k < 1:
            raise ValueError(f"KNNRouter.k must be >= 1, got {k}")
        self.k = k
        self.metric = metric

    def _fit(self, matrix: CorrectnessMatrix, train_questions: np.ndarray) -> None:
        from sklearn.neighbors import NearestNeighbors

        assert self.features is not None
        self.k_used = min(self.k, len(train_questions))
        self.index = NearestNeighbors(n_neighbors=self.k_used, metric=self.metric).fit(self.features[train_questions])
        y = matrix.labels[:, train_questions]
        self.obs = (y != MISSING).astype(np.float32)  # (M, Qtr)
        self.pos = np.where(y == 1, 1.0, 0.0).astype(np.float32)

    def _proba_features(self, x: np.ndarray) -> np.ndarray:
        nbr = self.index.kneighbors(x, return_distance=False)  # (n, k)
        pos = self.pos[:, nbr].sum(-1)  # (M, n)
        obs = self.obs[:, nbr].sum(-1)
        return np.where(obs > 0, pos / np.maximum(obs, 1), 0.5).T
