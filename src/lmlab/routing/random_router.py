"""Random router: a uniformly random candidate per question (seeded)."""

from __future__ import annotations

from typing import Any

import numpy as np

from lmlab.routing.base import Router
from lmlab.routing.data import CorrectnessMatrix


class RandomRouter(Router):
    name = "random"
    forecasts = False

    @classmethod
    def from_study(cls, cfg: Any) -> RandomRouter:
        return cls(cfg.seed)

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        self.rng = np.random.default_rng(seed)

    def _fit(self, matrix: CorrectnessMatrix, train_questions: np.ndarray) -> None:
        pass

    def _proba_index(self, q: np.ndarray) -> np.ndarray:
        return self.rng.random((len(q), len(self.model_names)))

    def _proba_features(self, x: np.ndarray) -> np.ndarray:
        return self._proba_index(np.zeros(len(x), dtype=np.int64))
