"""The router interface: ``choose(question, candidates) -> model``, for a serving gateway and for studies.

A router is fitted on a :class:`~lmlab.routing.data.CorrectnessMatrix`, the indices of its training
questions, and optionally question features (``(n_questions, dim)`` float, one row per question of the
matrix: sentence embeddings, or the zoo's bag of tokens). A *question* is then either the index of a
question of that matrix (its features are known) or a 1-D feature vector of a new question (routers
that read features only).

``predict_proba(questions)`` gives every model's predicted probability of answering correctly
(``(n, n_models)``); ``choose`` picks the most likely model among ``candidates`` (model names; all by
default); ``route`` does it for many questions at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from lmlab.routing.data import MISSING, CorrectnessMatrix, RoutingDataError


class Router:
    name: ClassVar[str] = "router"
    needs_features: ClassVar[bool] = False
    #: ``predict_proba`` forecasts correctness (scored by correctness accuracy); False for the oracle, which reads
    #: the labels, and the random router
    forecasts: ClassVar[bool] = True
    #: has ``save(path)`` and ``load(path, features)``: a study keeps it in the run directory and reuses it on resume
    checkpoint: ClassVar[bool] = False
    #: the hyperparameter a study tunes on its validation split over :meth:`candidates` (None: nothing to tune)
    tuned: ClassVar[str | None] = None

    @classmethod
    def from_study(cls, cfg: Any) -> Router:
        """The router a study config asks for under this registry name (its seed, ranks, k...); default ``cls()``.
        A new router is one file and one line in :data:`lmlab.routing.ROUTERS`, then one name in the study's
        ``routers`` list."""
        return cls()

    @classmethod
    def candidates(cls, cfg: Any) -> dict[Any, Router]:
        """Value of ``tuned`` -> router, for a study to pick the best on its validation split."""
        return {}

    def __init__(self) -> None:
        self.model_names: list[str] = []
        self.features: np.ndarray | None = None

    # -- fitting -----------------------------------------------------------------------------------
    def fit(self, matrix: CorrectnessMatrix, train_questions: np.ndarray | None = None,
            features: np.ndarray | None = None) -> Router:
        train_questions = np.arange(matrix.n_questions) if train_questions is None else np.asarray(train_questions)
        if len(train_questions) == 0:
            raise RoutingDataError(f"{self.name}: no training questions")
        if features is not None:
            features = np.asarray(features, dtype=np.float32)
            if features.ndim != 2 or features.shape[0] != matrix.n_questions:
                raise RoutingDataError(f"{self.name}: features must be (n_questions={matrix.n_questions}, dim), "
                                       f"got {features.shape}")
        elif self.needs_features:
            raise RoutingDataError(f"{self.name} router needs question features (n_questions, dim)")
        self.model_names = list(matrix.model_names)
        self.features = features
        self._fit(matrix, train_questions)
        return self

    def _fit(self, matrix: CorrectnessMatrix, train_questions: np.ndarray) -> None:
        raise NotImplementedError

    # -- prediction --------------------------------------------------------------------------------
    def predict_proba(self, questions: Any) -> np.ndarray:
        """(n, n_models) predicted P(correct) for question indices (1-D int) or feature rows (2-D float)."""
        q = np.asarray(questions)
        if q.ndim == 2 and q.dtype.kind == "f":
            return self._proba_features(q.astype(np.float32, copy=False))
        if q.ndim == 1 and q.dtype.kind in "iu":
            return self._proba_index(q.astype(np.int64, copy=False))
        raise TypeError("questions must be a 1-D array of question indices or a 2-D array of feature rows")

    def _proba_index(self, q: np.ndarray) -> np.ndarray:
        if self.features is None:
            raise RoutingDataError(f"{self.name}: question indices need the features given to fit()")
        return self._proba_features(self.features[q])

    def _proba_features(self, x: np.ndarray) -> np.ndarray:
        raise TypeError(f"the {self.name} router routes questions of its matrix only (give question indices)")

    def _candidate_index(self, candidates: Sequence[str] | None) -> np.ndarray:
        if candidates is None:
            return np.arange(len(self.model_names))
        if getattr(self, "_pos_names", None) is not self.model_names:  # name -> index, built once per fit
            self._pos = {n: i for i, n in enumerate(self.model_names)}
            self._pos_names = self.model_names
        pos = self._pos
        missing = [c for c in candidates if c not in pos]
        if missing:
            raise KeyError(f"{self.name}: unknown candidate model {missing[0]!r}; the router knows {len(pos)} models")
        if not candidates:
            raise ValueError("choose() needs at least one candidate")
        return np.array([pos[c] for c in candidates], dtype=np.int64)

    def choose(self, question: Any, candidates: Sequence[str] | None = None) -> str:
        """The candidate most likely to answer ``question`` (an index, or a 1-D feature vector)."""
        q = np.asarray(question)
        batch = q[None] if q.ndim == 1 else q.reshape(1)
        idx = self._candidate_index(candidates)
        p = self.predict_proba(batch)[0, idx]
        return self.model_names[int(idx[int(np.argmax(p))])]

    def route(self, questions: Any, candidates: Sequence[str] | None = None) -> np.ndarray:
        """Index (into ``model_names``) of the chosen model for each question."""
        idx = self._candidate_index(candidates)
        return idx[np.argmax(self.predict_proba(questions)[:, idx], axis=1)]


def observed_mean(y: np.ndarray, axis: int) -> np.ndarray:
    """Mean of the observed (non-missing) labels along ``axis``; 0.5 where nothing is observed."""
    obs = y != MISSING
    n = obs.sum(axis)
    return np.where(n > 0, np.where(obs, y, 0).sum(axis) / np.maximum(n, 1), 0.5)
