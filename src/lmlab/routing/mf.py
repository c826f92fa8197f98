"""Matrix factorisation baseline: truncated SVD of the training matrix, question factors regressed from features.

Classic matrix factorisation learns a vector per question, which does not exist for a question never
seen in training. This baseline factorises the centred training matrix ``Y - mean_m = U S V^T`` (rank r,
missing entries at the model's mean), then fits a ridge regression (scikit-learn) from the question
features to the question factors ``V S``; a new question's predicted correctness is
``mean_m + U_m . f(x_q)``, clipped to [0, 1]. It is the two-stage, linear cousin of EmbedLLM (which learns
both sides jointly through a logistic loss).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lmlab.routing.base import Router, observed_mean
from lmlab.routing.data import MISSING, CorrectnessMatrix


class MatrixFactorizationRouter(Router):
    name = "mf"

    @classmethod
    def from_study(cls, cfg: Any) -> MatrixFactorizationRouter:
        return cls(cfg.mf_rank)
    needs_features = True

    def __init__(self, rank: int = 16, ridge: float = 1.0) -> None:
        super().__init__()
        if rank < 1 or ridge < 0:
            raise ValueError("MatrixFactorizationRouter: rank must be >= 1 and ridge >= 0")
        self.rank = rank
        self.ridge = ridge

    def _fit(self, matrix: CorrectnessMatrix, train_questions: np.ndarray) -> None:
        from sklearn.linear_model import Ridge

        assert self.features is not None
        y = matrix.labels[:, train_questions].astype(np.float64)
        self.mean = observed_mean(matrix.labels[:, train_questions], axis=1)
        y = np.where(matrix.labels[:, train_questions] == MISSING, self.mean[:, None], y) - self.mean[:, None]
        r = min(self.rank, *y.shape)
        u, s, vt = np.linalg.svd(y, full_matrices=False)
        self.u = u[:, :r]  # (M, r)
        target = (vt[:r].T * s[:r])  # (Qtr, r)
        self.reg = Ridge(alpha=self.ridge).fit(self.features[train_questions], target)

    def _proba_features(self, x: np.ndarray) -> np.ndarray:
        f = self.reg.predict(x)  # (n, r)
        return np.clip(self.mean[None, :] + f @ self.u.T, 0.0, 1.0)
