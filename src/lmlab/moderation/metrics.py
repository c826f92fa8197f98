"""Detection metrics, ported from the MULI code (WhoTHU/detection_logits ``utils.computeMetrics``, ``main.py``).

Label 1 = toxic; a higher score = more toxic. Curves come from scikit-learn's ``roc_curve`` and
``precision_recall_curve`` (the same routines the paper's code calls).

==================  ================================================================================
``tpr_at_fpr``      TPR@FPR<=tau = tpr[i*], i* = max{i : fpr_i <= tau} on the ROC curve: conservative, not
                    interpolated. It equals the best TPR of any threshold whose FPR is at most tau (a test
                    checks it against a brute-force sweep). With n_neg negatives the FPR moves in steps of
                    1/n_neg; below that, the value is the TPR at zero false positives.
``auprc``           trapezoidal area under the precision-recall curve (``auc(recall, precision)``), as the paper
``average_prec``    average precision (``average_precision_score``), also reported by the paper
``auroc``           ``roc_auc_score``
``acc_opt``         max over thresholds of plain (unweighted) accuracy of ``score >= threshold``; the paper's
                    literal version (ROC thresholds, strict ``>``, can be one example lower): ``paper_strict=True``
``f1_best``         max F1 over precision-recall thresholds (``score >= threshold``), with that threshold
``fpr_at_tpr``      FPR at TPR 80/85/90/95%, linearly interpolated as the code does
``bootstrap``       percentile intervals from resampling positives and negatives separately (class counts
                    stay fixed, so every resample has the test set's FPR resolution)
==================  ================================================================================
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

FPRS = (0.001, 0.01, 0.1)


def _check(y: Any, s: Any) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y)
    s = np.asarray(s, dtype=np.float64)
    if y.shape != s.shape or y.ndim != 1:
        raise ValueError(f"labels {y.shape} and scores {s.shape} must be 1-d arrays of the same length")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be 0 (benign) or 1 (toxic)")
    if y.min() == y.max():
        raise ValueError("need both classes (at least one toxic and one benign example) to compute detection metrics")
    if not np.isfinite(s).all():
        raise ValueError("scores contain NaN or inf")
    return y.astype(np.int64), s


def tpr_at_fpr(y: Any, s: Any, tau: float) -> float:
    from sklearn.metrics import roc_curve

    y, s = _check(y, s)
    fpr, tpr, _ = roc_curve(y, s)
    return float(tpr[np.nonzero(fpr <= tau)[0][-1]])


def tpr_at_fpr_bruteforce(y: Any, s: Any, tau: float) -> float:
    """Reference: the best TPR over every threshold (flag ``s >= t``) whose FPR is at most tau."""
    y, s = _check(y, s)
    best = 0.0
    for t in np.concatenate([np.unique(s), [np.inf]]):
        flag = s >= t
        if flag[y == 0].mean() <= tau:
            best = max(best, float(flag[y == 1].mean()))
    return best


def auprc(y: Any, s: Any) -> float:
    from sklearn.metrics import auc, precision_recall_curve

    y, s = _check(y, s)
    p, r, _ = precision_recall_curve(y, s)
    return float(auc(r, p))


def average_prec(y: Any, s: Any) -> float:
    from sklearn.metrics import average_precision_score

    y, s = _check(y, s)
    return float(average_precision_score(y, s))


def auroc(y: Any, s: Any) -> float:
    from sklearn.metrics import roc_auc_score

    y, s = _check(y, s)
    return float(roc_auc_score(y, s))


def acc_opt(y: Any, s: Any, paper_strict: bool = False) -> tuple[float, float]:
    """(best plain accuracy, its threshold t), flagging ``s >= t``, maximised over every distinct score (and +inf).

    ``paper_strict=True`` reproduces the paper's code literally: thresholds from ``roc_curve`` and ``s > t``
    (strict). Those thresholds are scores, so the strict test never flags the point at the threshold and can
    miss the best cut by one example (e.g. a perfectly separated list gets less than 100%).
    """
    from sklearn.metrics import roc_curve

    y, s = _check(y, s)
    if paper_strict:
        _, _, thr = roc_curve(y, s)
        acc = ((s[:, None] > thr[None, :]) == y[:, None].astype(bool)).mean(0)
    else:
        thr = np.concatenate([np.unique(s)[::-1], [np.inf]])
        order = np.argsort(-s, kind="stable")
        ys, ss = y[order], s[order]
        # flagging s >= thr[k] flags the first m_k sorted items; accuracy = (TP + TN) / n
        m = np.searchsorted(-ss, -thr, side="right")
        tp = np.concatenate([[0], np.cumsum(ys)])[m]
        fp = m - tp
        acc = (tp + (len(y) - y.sum() - fp)) / len(y)
    i = int(np.argmax(acc))
    return float(acc[i]), float(thr[i])


def f1_best(y: Any, s: Any) -> tuple[float, float]:
    """(best F1, its threshold) over precision-recall thresholds (flag ``s >= threshold``)."""
    from sklearn.metrics import precision_recall_curve

    y, s = _check(y, s)
    p, r, thr = precision_recall_curve(y, s)
    p, r = p[:-1], r[:-1]  # the last point (precision 1, recall 0) has no threshold
    f1 = np.where(p + r > 0, 2 * p * r / np.maximum(p + r, 1e-300), 0.0)
    i = int(np.argmax(f1))
    return float(f1[i]), float(thr[i])


def fpr_at_tpr(y: Any, s: Any, targets: Sequence[float] = (0.80, 0.85, 0.90, 0.95)) -> list[float]:
    from sklearn.metrics import roc_curve

    y, s = _check(y, s)
    fpr, tpr, _ = roc_curve(y, s)
    return [float(v) for v in np.interp(targets, tpr, fpr)]


def evaluate(y: Any, s: Any, fprs: Sequence[float] = FPRS) -> dict[str, Any]:
    """Every point metric of one detector on one labelled score list."""
    y, s = _check(y, s)
    acc, acc_thr = acc_opt(y, s)
    f1, f1_thr = f1_best(y, s)
    out: dict[str, Any] = {"n": int(len(y)), "n_pos": int(y.sum()), "n_neg": int((1 - y).sum()),
                           "auprc": auprc(y, s), "average_precision": average_prec(y, s), "auroc": auroc(y, s),
                           "acc_opt": acc, "acc_opt_threshold": acc_thr, "f1_best": f1, "f1_best_threshold": f1_thr,
                           "fpr_at_tpr": dict(zip(("80", "85", "90", "95"), fpr_at_tpr(y, s)))}
    for tau in fprs:
        out[f"tpr_at_fpr_{_pct(tau)}"] = tpr_at_fpr(y, s, tau)
    # below 1/n_neg, TPR@FPR is the TPR at zero false positives: say so next to the number
    out["fpr_resolution"] = 1.0 / out["n_neg"]
    return out


def _pct(tau: float) -> str:
    return f"{tau * 100:g}pct"


def metric_fns(fprs: Sequence[float] = FPRS) -> dict[str, Callable[[np.ndarray, np.ndarray], float]]:
    fns: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
        "auprc": auprc, "auroc": auroc, "acc_opt": lambda y, s: acc_opt(y, s)[0], "f1_best": lambda y, s: f1_best(y, s)[0]}
    for tau in fprs:
        fns[f"tpr_at_fpr_{_pct(tau)}"] = lambda y, s, tau=tau: tpr_at_fpr(y, s, tau)
    return fns


def bootstrap_indices(y: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, n) indices resampling positives and negatives separately (stratified bootstrap)."""
    rng = np.random.default_rng(seed)
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    return np.concatenate([rng.choice(pos, (n_boot, len(pos))), rng.choice(neg, (n_boot, len(neg)))], axis=1)


def bootstrap(y: Any, scores: dict[str, Any], n_boot: int = 1000, seed: int = 0, alpha: float = 0.05,
              fprs: Sequence[float] = FPRS, pairs: Sequence[tuple[str, str]] = ()) -> dict[str, Any]:
    """Percentile (1 - alpha) intervals of every metric for each detector in ``scores``, from the same
    resamples for all detectors, and of the paired differences ``a - b`` for each ``(a, b)`` in ``pairs``."""
    y = np.asarray(y).astype(np.int64)
    fns = metric_fns(fprs)
    idx = bootstrap_indices(y, n_boot, seed)
    draws: dict[str, dict[str, np.ndarray]] = {}
    for name, s in scores.items():
        s = np.asarray(s, dtype=np.float64)
        _check(y, s)
        draws[name] = {m: np.array([fn(y[ix], s[ix]) for ix in idx]) for m, fn in fns.items()}
    lo, hi = 100 * alpha / 2, 100 * (1 - alpha / 2)
    ci = lambda v: [float(np.percentile(v, lo)), float(np.percentile(v, hi))]  # noqa: E731
    out: dict[str, Any] = {"n_boot": n_boot, "alpha": alpha, "seed": seed,
                           "detectors": {n: {m: ci(v) for m, v in d.items()} for n, d in draws.items()}, "differences": {}}
    for a, b in pairs:
        out["differences"][f"{a} - {b}"] = {m: ci(draws[a][m] - draws[b][m]) for m in fns}
    return out
