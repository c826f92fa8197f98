"""Oracle: reads the true labels of every question (the upper bound of routing, not a real router).

It picks a model that answers correctly whenever one exists; among several, the one with the best
training accuracy (so its choices are deterministic).
"""

from __future__ import annotations

import numpy as np

from lmlab.routing.base import Router, observed_mean
from lmlab.routing.data import MISSING, CorrectnessMatrix


class OracleRouter(Router):
    name = "oracle"
    forecasts = False

    def _fit(self, matrix: CorrectnessMatrix, train_questions: np.ndarray) -> None:
        self.labels = np.where(matrix.labels == MISSING, 0, matrix.labels).astype(np.float64)
        acc = observed_mean(matrix.labels[:, train_questions], axis=1)
        self.tiebreak = 1e-3 * acc / max(float(acc.max()), 1e-9)

    def _proba_index(self, q: np.ndarray) -> np.ndarray:
        return self.labels[:, q].T + self.tiebreak[None, :]
