"""Scores to preference pairs: length control, pair selection, Bradley-Terry from pairwise verdicts, the
position-bias-weighted Elo of Meta-Rewarding's meta-judge, and variance-based response selection.

All functions are pure NumPy over one prompt's K samples (or one response's N judgments).

>>> s = np.array([1.0, 1.0, 0.0, 0.0]); n = np.array([40, 10, 30, 20])
>>> select_tpo(s, n, rho=0.0) is not None, select_tpo(s, n, rho=0.5)
(True, (1, 2))
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def normalise(v: Sequence[float]) -> np.ndarray:
    """N(v) = (v - mean) / std within one prompt's samples; all-equal values give zeros."""
    v = np.asarray(v, float)
    sd = v.std()
    return np.zeros_like(v) if not np.isfinite(sd) or sd < 1e-12 else (v - v.mean()) / sd


def length_controlled(scores: Sequence[float], lengths: Sequence[float], rho: float) -> np.ndarray:
    """TPO's length-controlled score S' = N(s) - rho * N(len), normalised within the K samples."""
    return normalise(scores) - rho * normalise(lengths)


def select_tpo(scores: Sequence[float], lengths: Sequence[float], rho: float) -> tuple[int, int] | None:
    """(chosen, rejected) = (argmax S', argmin S'); None when the judge gave every sample the same score
    (no preference to learn from) or fewer than two samples remain.

    Ties in S' go to the earlier sample (``np.argmax``), so the pair is a pure function of the inputs.
    """
    s = np.asarray(scores, float)
    if len(s) < 2 or np.ptp(s) == 0:
        return None
    sp = length_controlled(s, lengths, rho)
    c, r = int(np.argmax(sp)), int(np.argmin(sp))
    return None if c == r else (c, r)


def select_tier(scores: Sequence[float], lengths: Sequence[float], rho: float) -> tuple[int, int] | None:
    """Meta-Rewarding's quality-tier selection: chosen = the shortest sample scoring in
    [(1-rho) S_max + rho S_min, S_max], rejected = the longest scoring in [S_min, (1-rho) S_min + rho S_max].
    rho = 0 is plain max/min. None when all scores tie."""
    s, n = np.asarray(scores, float), np.asarray(lengths, float)
    if len(s) < 2 or np.ptp(s) == 0:
        return None
    smax, smin = s.max(), s.min()
    top = np.flatnonzero(s >= (1 - rho) * smax + rho * smin - 1e-12)
    bottom = np.flatnonzero(s <= (1 - rho) * smin + rho * smax + 1e-12)
    c = int(top[np.argmin(n[top])])
    r = int(bottom[np.argmax(n[bottom])])
    return None if c == r or s[c] <= s[r] else (c, r)


SELECTORS = {"tpo": select_tpo, "tier": select_tier}


def bradley_terry_scores(n_items: int, first: Sequence[int], second: Sequence[int], outcome: Sequence[float],
                         ridge: float = 1e-2) -> np.ndarray:
    """Per-item Bradley-Terry scores from pairwise verdicts (``outcome`` 1: ``first`` won, 0: ``second`` won,
    0.5: tie), through :func:`lmlab.rewardeval.metrics.bradley_terry` (a ridge keeps an undefeated item finite).
    Items that never played score 0."""
    from lmlab.rewardeval.metrics import bradley_terry

    if not len(outcome):
        return np.zeros(n_items)
    beta = bradley_terry(list(first), list(second), list(outcome), models=list(range(n_items)), ridge=ridge)
    return np.array([beta[i] for i in range(n_items)])


def battle_weights(battles: Sequence[tuple[int, int, int]], n_items: int, weighted: bool = True) -> np.ndarray:
    """Meta-Rewarding's battle matrix B from meta-judge verdicts ``(m, n, r)``: judgment m in the first
    position, n in the second, r = 1 (first wins), -1 (second wins), 0 (tie or unparsed).

    With w1, w2 the wins of the first and second position, omega1 = w2/(w1+w2) and omega2 = w1/(w1+w2)
    (a win from the position the judge favours counts less); B[m, n] += omega1 for r = 1 and B[n, m] +=
    omega2 for r = -1. ``weighted=False`` gives every win weight 1/2 (the unweighted fit).
    """
    B = np.zeros((n_items, n_items))
    r = np.array([b[2] for b in battles]) if battles else np.zeros(0)
    w1, w2 = float((r == 1).sum()), float((r == -1).sum())
    if weighted and w1 + w2 > 0:
        o1, o2 = w2 / (w1 + w2), w1 / (w1 + w2)
    else:
        o1 = o2 = 0.5
    for m, n, res in battles:
        if res == 1:
            B[m, n] += o1
        elif res == -1:
            B[n, m] += o2
    return B


def elo_fit(B: np.ndarray, ridge: float = 1e-2, iters: int = 50) -> np.ndarray:
    """epsilon = argmax sum_{m,n} B[m, n] log sigmoid(eps_m - eps_n) - ridge/2 |eps|^2, centred.

    Newton's method on the concave objective (a handful of items: a dense Hessian is cheapest; scipy's generic
    optimisers spend most of their time in Python overhead here). The ridge keeps an undefeated judgment finite
    and fixes the free offset (the paper does not say how it regularises).
    """
    B = np.asarray(B, float)
    n = B.shape[0]
    e = np.zeros(n)
    games = B + B.T
    for _ in range(iters):
        d = e[:, None] - e[None, :]
        p = 1.0 / (1.0 + np.exp(-d))  # P(m beats n)
        grad = (B * (1 - p)).sum(1) - (B.T * p).sum(1) - ridge * e
        w = games * p * (1 - p)
        H = w - np.diag(w.sum(1)) - ridge * np.eye(n)
        step = np.linalg.solve(H, grad)
        e = e - step
        if np.abs(step).max() < 1e-10:
            break
    return e - e.mean()


def weighted_elo(battles: Sequence[tuple[int, int, int]], n_items: int, weighted: bool = True) -> np.ndarray:
    """Elo scores of ``n_items`` judgments from meta-judge battles (:func:`battle_weights` then :func:`elo_fit`)."""
    return elo_fit(battle_weights(battles, n_items, weighted))


def most_disputed(judgment_scores: Sequence[Sequence[float]]) -> int | None:
    """Index of the response whose parsed judgment scores (NaN = unparsed) have the highest variance;
    None when no response has two parsed scores or all variances are zero."""
    best, best_var = None, 0.0
    for i, row in enumerate(judgment_scores):
        v = np.asarray(row, float)
        v = v[np.isfinite(v)]
        if len(v) >= 2 and v.var() > best_var + 1e-12:
            best, best_var = i, float(v.var())
    return best
