"""What the paper measures: correctness-forecast accuracy, route accuracy, the weighted baseline."""

from __future__ import annotations

import numpy as np

from lmlab.routing.base import Router
from lmlab.routing.data import MISSING, CorrectnessMatrix


def correctness_accuracy(router: Router, matrix: CorrectnessMatrix, questions: np.ndarray) -> float:
    """Share of observed (model, question) entries of ``questions`` where P(correct) > 0.5 matches the label."""
    p = router.predict_proba(np.asarray(questions)).T  # (M, n)
    y = matrix.labels[:, questions]
    obs = y != MISSING
    return float(((p > 0.5) == (y == 1))[obs].mean())


def route_accuracy(router: Router, matrix: CorrectnessMatrix, questions: np.ndarray) -> dict[str, float | list[int]]:
    """Route accuracy (1/|Q|) sum_q y[m*(q), q], and the paper's weighted baseline sum_m acc_m count_m / |Q|.

    A missing label for the chosen model counts as wrong (the reference code fills missing with 0).
    ``acc_m`` is model m's accuracy on ``questions`` (the test split, as in the reference evaluator).
    """
    questions = np.asarray(questions)
    chosen = router.route(questions)
    y = np.where(matrix.labels == MISSING, 0, matrix.labels)
    hit = y[chosen, questions]
    counts = np.bincount(chosen, minlength=matrix.n_models)
    acc = matrix.accuracy(questions)
    return {"route_accuracy": float(hit.mean()),
            "weighted_baseline": float((acc * counts).sum() / len(questions)),
            "counts": counts.tolist()}
