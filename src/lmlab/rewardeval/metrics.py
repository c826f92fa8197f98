"""PPE metrics, each a pure vectorised NumPy function (spec: ``shared/specs/reward-model-eval.md``).

Two families, as in PPE (Frick et al. 2025, arXiv 2410.14872):

**Human preference** (pairs of responses with a human vote; spec "Human-preference metrics"). Inputs
are per-pair arrays: ``margin = r(x, response_1) - r(x, response_2)``, ``label`` = +1 (response_1 /
model_a preferred), -1 (response_2 / model_b preferred) or 0 (a tie), and the two models' names.

- :func:`pairwise_accuracy` (overall), :func:`accuracy_by_domain`;
- :func:`bradley_terry` (+ :func:`bradley_terry_bootstrap`): the leaderboard a set of votes induces;
- :func:`rank_correlations` (Spearman rho, Kendall tau of RM vs human Bradley-Terry scores);
- :func:`win_rate_matrix`, :func:`rowwise_pearson`;
- :func:`separability`, :func:`confidence_agreement` (the Arena-Hard confidence machinery);
- :func:`brier_score`;
- :func:`preference_metrics` computes all of them in one call.

**Verifiable correctness / best-of-K** (``scores`` and boolean ``labels`` of shape (n_prompts, K);
spec "Best-of-K metrics"):

- :func:`bok_pairwise_accuracy`, :func:`best_of_k_curve` (exact, closed form), :func:`oracle_curve`,
  :func:`roc_auc`, :func:`rowwise_pearson_bok`, :func:`bok_summary` (max BoK, end score, improvement
  over the base, squared error to the oracle, area under the accuracy-vs-K curve);
- :func:`aggregate_domains` (mean / max / min / low quantiles across domains).

:func:`bootstrap_ci` gives percentile confidence intervals for any of them (resampling prompts/pairs);
:func:`bootstrap_mean_ci` is its fast exact form for means of per-pair or per-prompt values.

The lmarena/PPE code was not available to us (spec: "the code itself was not inspected"); formulas
follow the spec and the Arena-Hard conventions it cites. Where the spec leaves a choice open, the
docstring says which one is taken.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

# -- helpers ---------------------------------------------------------------------------------------

WINNER_LABELS = {"model_a": 1, "model_b": -1, "tie": 0, "tie (bothbad)": 0}


def preference_labels(winner: Sequence[str]) -> np.ndarray:
    """PPE ``winner`` strings -> +1 (model_a), -1 (model_b), 0 (``tie`` or ``tie (bothbad)``).

    >>> preference_labels(["model_a", "tie (bothbad)", "model_b"]).tolist()
    [1, 0, -1]
    """
    try:
        return np.array([WINNER_LABELS[w] for w in winner], dtype=np.int8)
    except KeyError as e:
        raise ValueError(f"winner {e.args[0]!r} is not one of {', '.join(WINNER_LABELS)}") from None


def _sigmoid(x: np.ndarray) -> np.ndarray:
    from scipy.special import expit

    return expit(x)


def _as_1d(x: Any, name: str) -> np.ndarray:
    a = np.asarray(x)
    if a.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {a.shape}")
    return a


def _codes(x: np.ndarray, names: list[Any]) -> np.ndarray:
    """Positions of the values of ``x`` in ``names`` (vectorised; ValueError for a value not in names)."""
    ref = np.asarray(names)
    order = np.argsort(ref, kind="stable")
    pos = np.searchsorted(ref[order], x)
    pos = np.clip(pos, 0, len(ref) - 1)
    bad = ref[order][pos] != x
    if bad.any():
        raise ValueError(f"model {x[np.flatnonzero(bad)[0]]!r} is not in models")
    return order[pos]


def _model_index(model_a: Sequence[Any], model_b: Sequence[Any]) -> tuple[np.ndarray, np.ndarray, list[Any]]:
    """Integer codes for two arrays of model names (shared code book, sorted names)."""
    a, b = np.asarray(model_a), np.asarray(model_b)
    names, inv = np.unique(np.concatenate([a, b]), return_inverse=True)
    return inv[: len(a)], inv[len(a):], names.tolist()


# -- human preference: accuracy -----------------------------------------------------------------------

def pairwise_accuracy(margin: Any, label: Any, rm_ties: str = "wrong") -> float:
    """Accuracy of an RM on human-preference pairs (spec: "Accuracy over non-tie pairs", headline metric).

    ``Acc = mean over pairs with label != 0 of 1[sign(margin) = sign(label)]``, where
    ``margin = r(x, a) - r(x, b)``. Human ties (``label == 0``) are excluded, as the spec says. An RM
    tie (``margin == 0``) has sign 0 and so counts as wrong (``rm_ties="wrong"``, the spec's formula);
    ``rm_ties="half"`` gives it half a point (the expected accuracy of breaking the tie by a coin).
    NaN if no pair is untied.

    >>> pairwise_accuracy([1.0, -2.0, 0.5, 0.0], [1, 1, 0, -1])   # right, wrong, (human tie), RM tie
    0.3333333333333333
    >>> pairwise_accuracy([1.0, -2.0, 0.5, 0.0], [1, 1, 0, -1], rm_ties="half")
    0.5
    """
    correct = pair_correctness(margin, label, rm_ties)
    return float(np.nanmean(correct)) if np.isfinite(correct).any() else float("nan")


def pair_correctness(margin: Any, label: Any, rm_ties: str = "wrong") -> np.ndarray:
    """Per-pair credit (1, 0, or 0.5 for an RM tie with ``rm_ties="half"``); NaN for human ties."""
    m, y = _as_1d(margin, "margin").astype(float), _as_1d(label, "label")
    if len(m) != len(y):
        raise ValueError(f"{len(m)} margins but {len(y)} labels")
    if rm_ties not in ("wrong", "half"):
        raise ValueError(f"rm_ties must be 'wrong' or 'half', got {rm_ties!r}")
    out = (np.sign(m) == np.sign(y)).astype(float)
    if rm_ties == "half":
        out[m == 0] = 0.5
    out[y == 0] = np.nan
    return out


def accuracy_by_domain(margin: Any, label: Any, domain: Sequence[Any], rm_ties: str = "wrong") -> dict[str, dict[str, float]]:
    """:func:`pairwise_accuracy` within each domain (PPE reports accuracy per category/language).

    Returns ``{domain: {"accuracy": acc, "n": untied pairs}}``, sorted by domain name.

    >>> accuracy_by_domain([1, -1, 1], [1, 1, 1], ["x", "x", "y"])
    {'x': {'accuracy': 0.5, 'n': 2}, 'y': {'accuracy': 1.0, 'n': 1}}
    """
    correct = pair_correctness(margin, label, rm_ties)
    d = np.asarray(domain)
    names, inv = np.unique(d, return_inverse=True)
    ok = np.isfinite(correct)
    n = np.bincount(inv[ok], minlength=len(names))
    s = np.bincount(inv[ok], weights=correct[ok], minlength=len(names))
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = s / n
    return {str(k): {"accuracy": float(a), "n": int(c)} for k, a, c in zip(names, acc, n)}


# -- human preference: Bradley-Terry leaderboards -------------------------------------------------

def vote_outcomes(margin: Any) -> np.ndarray:
    """An RM's verdicts as votes for model_a: 1 (margin > 0), 0 (margin < 0), 0.5 (a tie)."""
    m = _as_1d(margin, "margin").astype(float)
    return np.where(m > 0, 1.0, np.where(m < 0, 0.0, 0.5))


def label_outcomes(label: Any) -> np.ndarray:
    """Human labels (+1/-1/0) as votes for model_a: 1, 0, 0.5 (a tie is half a win each, Arena style)."""
    return (_as_1d(label, "label").astype(float) + 1.0) / 2.0


def _pair_table(ia: np.ndarray, ib: np.ndarray, n_models: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unordered model pairs (i < j) that met, and for each vote its pair index and orientation."""
    lo, hi = np.minimum(ia, ib), np.maximum(ia, ib)
    key = lo * n_models + hi
    keys, pair_of_vote = np.unique(key, return_inverse=True)
    flipped = ia > ib  # the vote's model_a is the pair's second model
    return keys, pair_of_vote, flipped


def _bt_newton(pi: np.ndarray, pj: np.ndarray, wins: np.ndarray, games: np.ndarray, n_models: int,
               ridge: float, iters: int = 100, tol: float = 1e-10) -> np.ndarray:
    """Batched Bradley-Terry MLE with an L2 ridge by Newton's method on aggregated counts.

    ``wins``/``games`` are (B, P): for B vote sets, wins of pair p's first model ``pi[p]`` over ``pj[p]``.
    Written out rather than calling scikit-learn's LogisticRegression (a test checks they agree): the
    bootstrap needs hundreds of fits of a tiny (M parameters) problem, and one batched Newton solve on
    the aggregated counts takes milliseconds where hundreds of separate fits on the votes take seconds.
    """
    B, P = wins.shape
    X = np.zeros((P, n_models))
    X[np.arange(P), pi] = 1.0
    X[np.arange(P), pj] = -1.0
    beta = np.zeros((B, n_models))
    # ridge * I, plus curvature along the all-ones direction (the one the likelihood cannot see): the
    # Hessian stays invertible with ridge=0 and the fixed point (gradient 0) is unchanged.
    eye = ridge * np.eye(n_models) + np.ones((n_models, n_models)) / n_models
    for _ in range(iters):
        p = _sigmoid(beta @ X.T)  # (B, P)
        grad = (wins - games * p) @ X - ridge * beta
        w = games * p * (1 - p)
        H = (X.T[None] * w[:, None, :]) @ X + eye  # X^T diag(w_b) X for every b
        step = np.linalg.solve(H, grad[..., None])[..., 0]
        beta = beta + step
        if np.abs(step).max() < tol:
            break
    return beta - beta.mean(axis=1, keepdims=True)


def _bt_prepare(model_a: Sequence[Any], model_b: Sequence[Any], outcome: Any, models: Sequence[Any] | None):
    a = np.asarray(model_a)
    b = np.asarray(model_b)
    y = _as_1d(outcome, "outcome").astype(float)
    if not (len(a) == len(b) == len(y)):
        raise ValueError(f"model_a, model_b and outcome lengths differ: {len(a)}, {len(b)}, {len(y)}")
    if ((y < 0) | (y > 1)).any():
        raise ValueError("outcome must lie in [0, 1] (1: model_a wins, 0: model_b wins, 0.5: tie)")
    if models is None:
        ia, ib, names = _model_index(a, b)
    else:
        names = list(models)
        ia, ib = _codes(a, names), _codes(b, names)
    M = len(names)
    keys, pair_of_vote, flipped = _pair_table(ia, ib, M)
    win_first = np.where(flipped, 1.0 - y, y)  # outcome from the pair's first model's side
    return names, M, keys // M, keys % M, pair_of_vote, win_first


def bradley_terry(model_a: Sequence[Any], model_b: Sequence[Any], outcome: Any, models: Sequence[Any] | None = None,
                  ridge: float = 1e-3) -> dict[Any, float]:
    """Bradley-Terry scores fitted to votes (spec: "RM-induced leaderboard").

    ``P(m beats m') = sigmoid(beta_m - beta_m')``, maximum likelihood with a small L2 ridge (which keeps
    an undefeated model finite and fixes the free offset; scores are centred to mean 0, in natural
    log-odds units -- multiply by 400/ln 10 for the Elo scale). ``outcome`` is 1 when model_a won, 0
    when model_b won, 0.5 for a tie (half a win each; :func:`label_outcomes`, :func:`vote_outcomes`).
    Fitting human votes gives beta*, fitting an RM's verdicts on the same pairs gives the RM's
    leaderboard. Returns ``{model: beta}``.

    >>> b = bradley_terry(["x", "x", "x", "y"], ["y", "y", "y", "x"], [1, 1, 1, 1], ridge=0.0)
    >>> round(b["x"] - b["y"], 4) == round(float(np.log(3)), 4)   # 3 wins to 1
    True
    """
    names, M, pi, pj, pv, wf = _bt_prepare(model_a, model_b, outcome, models)
    P = len(pi)
    wins = np.bincount(pv, weights=wf, minlength=P)[None]
    games = np.bincount(pv, minlength=P).astype(float)[None]
    beta = _bt_newton(pi, pj, wins, games, M, ridge)[0]
    return dict(zip(names, beta.tolist()))


def bradley_terry_bootstrap(model_a: Sequence[Any], model_b: Sequence[Any], outcome: Any,
                            models: Sequence[Any] | None = None, n_boot: int = 100, seed: int = 0,
                            ridge: float = 1e-3) -> tuple[list[Any], np.ndarray]:
    """Bradley-Terry scores on ``n_boot`` bootstrap resamples of the votes: (model names, (n_boot, M)).

    Votes are resampled with replacement (the spec's "bootstrap the Bradley-Terry fit, e.g. 100
    resamples"); every resample is fitted by one batched Newton solve. Resampling n votes with
    replacement is drawn as one multinomial over the (model pair, outcome) cells with the votes'
    frequencies -- the same distribution as drawing vote indices, without touching every vote.
    """
    names, M, pi, pj, pv, wf = _bt_prepare(model_a, model_b, outcome, models)
    P, n = len(pi), len(pv)
    rng = np.random.default_rng(seed)
    outcomes, oi = np.unique(wf, return_inverse=True)  # at most {0, 0.5, 1}
    cell = pv * len(outcomes) + oi
    freq = np.bincount(cell, minlength=P * len(outcomes)) / n
    counts = rng.multinomial(n, freq, size=n_boot).reshape(n_boot, P, len(outcomes)).astype(float)
    wins = counts @ outcomes
    games = counts.sum(-1)
    return names, _bt_newton(pi, pj, wins, games, M, ridge)


def rank_correlations(beta_rm: Mapping[Any, float], beta_ref: Mapping[Any, float]) -> dict[str, float]:
    """Spearman rho and Kendall tau (tau-b) between per-model scores of an RM and the reference (spec).

    Computed over the models both leaderboards contain (SciPy's ``spearmanr``/``kendalltau``).

    >>> rank_correlations({"a": 3, "b": 2, "c": 1}, {"a": 0.9, "b": 0.5, "c": 0.1})
    {'spearman': 1.0, 'kendall': 1.0}
    """
    from scipy.stats import kendalltau, spearmanr

    common = [m for m in beta_ref if m in beta_rm]
    x = np.array([beta_rm[m] for m in common], float)
    y = np.array([beta_ref[m] for m in common], float)
    if len(common) < 2:
        return {"spearman": float("nan"), "kendall": float("nan")}
    return {"spearman": float(spearmanr(x, y).statistic), "kendall": float(kendalltau(x, y).statistic)}


def win_rate_matrix(model_a: Sequence[Any], model_b: Sequence[Any], outcome: Any,
                    models: Sequence[Any] | None = None) -> tuple[list[Any], np.ndarray]:
    """Empirical win rates: ``W[m, m']`` = share of m's votes against m' that m won (ties count half).

    NaN where two models never met and on the diagonal. Returns (model names, W).
    """
    names, M, pi, pj, pv, wf = _bt_prepare(model_a, model_b, outcome, models)
    P = len(pi)
    wins = np.bincount(pv, weights=wf, minlength=P)
    games = np.bincount(pv, minlength=P).astype(float)
    W = np.full((M, M), np.nan)
    W[pi, pj] = wins / games
    W[pj, pi] = 1.0 - wins / games
    return names, W


def rowwise_pearson(W_rm: np.ndarray, W_ref: np.ndarray) -> float:
    """Row-wise Pearson (spec): ``(1/M) sum_m corr(W_RM[m, .], W_H[m, .])``.

    Each row's correlation uses the opponents with a finite win rate in both matrices (the diagonal
    is excluded); rows with fewer than two such opponents or a constant row are left out of the mean.

    >>> W = np.array([[np.nan, .8, .9], [.2, np.nan, .6], [.1, .4, np.nan]])
    >>> rowwise_pearson(W, W)
    1.0
    """
    A, B = np.asarray(W_rm, float), np.asarray(W_ref, float)
    if A.shape != B.shape or A.ndim != 2 or A.shape[0] != A.shape[1]:
        raise ValueError(f"win-rate matrices must be square and of equal shape, got {A.shape} and {B.shape}")
    ok = np.isfinite(A) & np.isfinite(B)
    ok[np.diag_indices_from(ok)] = False
    n = ok.sum(1)
    a = np.where(ok, A, 0.0)
    b = np.where(ok, B, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        ma, mb = a.sum(1) / n, b.sum(1) / n
        da = np.where(ok, A - ma[:, None], 0.0)
        db = np.where(ok, B - mb[:, None], 0.0)
        r = (da * db).sum(1) / np.sqrt((da ** 2).sum(1) * (db ** 2).sum(1))
    r = r[(n >= 2) & np.isfinite(r)]
    return float(r.mean()) if len(r) else float("nan")


def _ci_directions(boot: np.ndarray, level: float) -> np.ndarray:
    """(M, M) matrix: +1 where m's CI lies wholly above m''s, -1 wholly below, 0 where they overlap."""
    lo = np.quantile(boot, (1 - level) / 2, axis=0)
    hi = np.quantile(boot, 1 - (1 - level) / 2, axis=0)
    above = lo[:, None] > hi[None, :]
    below = hi[:, None] < lo[None, :]
    return above.astype(int) - below.astype(int)


def separability(boot: np.ndarray, level: float = 0.95) -> float:
    """Separability (spec, Arena-Hard): fraction of model pairs whose ``level`` CIs are disjoint.

    ``boot`` is (n_boot, M) bootstrap Bradley-Terry scores (:func:`bradley_terry_bootstrap`); CIs are
    the percentile intervals. Counts each unordered pair once.
    """
    d = _ci_directions(np.asarray(boot, float), level)
    iu = np.triu_indices(d.shape[0], 1)
    return float(np.mean(d[iu] != 0)) if len(iu[0]) else float("nan")


def confidence_agreement(boot_rm: np.ndarray, boot_ref: np.ndarray, level: float = 0.95) -> float:
    """Confidence agreement (spec, Arena-Hard): mean over model pairs of +1 (both leaderboards separate
    the pair, in the same direction), -1 (both separate it, in opposite directions), 0 (otherwise).

    Both arguments are (n_boot, M) bootstrap scores over the same models in the same order.
    """
    a = _ci_directions(np.asarray(boot_rm, float), level)
    b = _ci_directions(np.asarray(boot_ref, float), level)
    if a.shape != b.shape:
        raise ValueError(f"bootstrap arrays cover different numbers of models: {a.shape[0]} and {b.shape[0]}")
    iu = np.triu_indices(a.shape[0], 1)
    return float(np.mean(a[iu] * b[iu])) if len(iu[0]) else float("nan")


def brier_score(beta_rm: Mapping[Any, float], beta_ref: Mapping[Any, float]) -> float:
    """Brier score (spec): mean over model pairs of ``(p_mm' - 1[beta*_m > beta*_m'])**2``.

    ``p_mm' = sigmoid(beta_m - beta_m')`` is the RM leaderboard's probability that m beats m';
    the target is 1 when the reference (human) leaderboard ranks m above m' (0.5 for an exact tie).
    Over unordered pairs (the loss is symmetric). 0 is perfect confidence in the right order.

    >>> round(brier_score({"a": 1.0, "b": 0.0}, {"a": 5.0, "b": 1.0}), 4)   # (sigmoid(1) - 1)**2
    0.0723
    """
    common = [m for m in beta_ref if m in beta_rm]
    x = np.array([beta_rm[m] for m in common], float)
    y = np.array([beta_ref[m] for m in common], float)
    iu = np.triu_indices(len(common), 1)
    if not len(iu[0]):
        return float("nan")
    p = _sigmoid(x[iu[0]] - x[iu[1]])
    t = np.where(y[iu[0]] > y[iu[1]], 1.0, np.where(y[iu[0]] < y[iu[1]], 0.0, 0.5))
    return float(np.mean((p - t) ** 2))


def preference_metrics(margin: Any, label: Any, model_a: Sequence[Any] | None = None,
                       model_b: Sequence[Any] | None = None, domain: Sequence[Any] | None = None,
                       n_boot: int = 100, seed: int = 0, level: float = 0.95, rm_ties: str = "wrong") -> dict[str, Any]:
    """Every human-preference metric for one RM in one call.

    Accuracy (overall, per domain) needs only ``margin`` and ``label``; the leaderboard metrics
    (Spearman, Kendall, row-wise Pearson, separability, confidence agreement, Brier) need model names
    and at least three models, and are None otherwise. The RM's and the humans' leaderboards are
    fitted on the same pairs (all pairs, ties as half wins).
    """
    out: dict[str, Any] = {"accuracy": pairwise_accuracy(margin, label, rm_ties),
                           "n_pairs": int(len(np.asarray(margin))),
                           "n_untied": int(np.sum(np.asarray(label) != 0))}
    if domain is not None:
        out["accuracy_by_domain"] = accuracy_by_domain(margin, label, domain, rm_ties)
    keys = ("spearman", "kendall", "rowwise_pearson", "separability", "confidence_agreement", "brier",
            "separability_human")
    out.update({k: None for k in keys})
    if model_a is None or model_b is None or len(set(np.concatenate([np.asarray(model_a), np.asarray(model_b)]))) < 3:
        return out
    y_rm, y_h = vote_outcomes(margin), label_outcomes(label)
    ia, ib, model_names = _model_index(model_a, model_b)  # encode once; below, models are integer codes
    names = list(range(len(model_names)))
    model_a, model_b = ia, ib
    b_rm = bradley_terry(model_a, model_b, y_rm, names)
    b_h = bradley_terry(model_a, model_b, y_h, names)
    _, boot_rm = bradley_terry_bootstrap(model_a, model_b, y_rm, names, n_boot, seed)
    _, boot_h = bradley_terry_bootstrap(model_a, model_b, y_h, names, n_boot, seed + 1)
    out.update(rank_correlations(b_rm, b_h))
    out["rowwise_pearson"] = rowwise_pearson(win_rate_matrix(model_a, model_b, y_rm, names)[1],
                                             win_rate_matrix(model_a, model_b, y_h, names)[1])
    out["separability"] = separability(boot_rm, level)
    out["separability_human"] = separability(boot_h, level)
    out["confidence_agreement"] = confidence_agreement(boot_rm, boot_h, level)
    out["brier"] = brier_score(b_rm, b_h)
    out["bt_rm"] = {model_names[i]: v for i, v in b_rm.items()}
    out["bt_human"] = {model_names[i]: v for i, v in b_h.items()}
    return out


# -- verifiable correctness: best-of-K ----------------------------------------------------------------

def _check_bok(scores: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, float)
    c = np.asarray(labels)
    if s.ndim != 2 or s.shape != c.shape:
        raise ValueError(f"scores and labels must both be (n_prompts, K), got {s.shape} and {c.shape}")
    if c.dtype != bool:
        if not np.isin(c, (0, 1)).all():
            raise ValueError("labels must be booleans (or 0/1)")
        c = c.astype(bool)
    if not np.isfinite(s).all():
        raise ValueError("scores must be finite (a NaN or inf score has no rank)")
    return s, c


def bok_pairwise_accuracy(scores: Any, labels: Any, ties: str = "wrong", per_row: bool = False) -> Any:
    """Pairwise accuracy on a correctness set (spec): mean of ``1[s_j > s_k]`` over pairs of a correct
    response j and an incorrect response k of the same prompt.

    Averaged per prompt first, then over the prompts that have at least one such pair (every prompt
    weighs the same, whatever its number of correct responses). A tie ``s_j == s_k`` counts 0
    (``ties="wrong"``, the spec's strict inequality) or 0.5 (``ties="half"``; then the per-prompt
    value is that prompt's ROC-AUC). ``per_row=True`` returns the per-prompt values (NaN where a
    prompt has no pair).

    >>> bok_pairwise_accuracy([[3., 2., 1.]], [[True, False, True]])   # pairs (3>2), (1<2)
    0.5
    """
    s, c = _check_bok(scores, labels)
    if ties not in ("wrong", "half"):
        raise ValueError(f"ties must be 'wrong' or 'half', got {ties!r}")
    pair = c[:, :, None] & ~c[:, None, :]  # (n, K, K): j correct, k incorrect
    gt = (s[:, :, None] > s[:, None, :]) & pair
    credit = gt.sum((1, 2)).astype(float)
    if ties == "half":
        credit += 0.5 * ((s[:, :, None] == s[:, None, :]) & pair).sum((1, 2))
    n = pair.sum((1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = np.where(n > 0, credit / n, np.nan)
    if per_row:
        return acc
    return float(np.nanmean(acc)) if (n > 0).any() else float("nan")


def _tie_averaged_sorted_labels(s: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Labels sorted by score (descending), each replaced by the mean label of its tie group."""
    n, K = s.shape
    order = np.argsort(-s, axis=1, kind="stable")
    ss = np.take_along_axis(s, order, 1)
    cs = np.take_along_axis(c, order, 1).astype(float)
    new_group = np.ones((n, K), dtype=bool)
    new_group[:, 1:] = ss[:, 1:] != ss[:, :-1]
    gid = (np.cumsum(new_group, axis=1) - 1) + (np.arange(n) * K)[:, None]
    flat = gid.ravel()
    sums = np.bincount(flat, weights=cs.ravel(), minlength=n * K)
    cnts = np.bincount(flat, minlength=n * K)
    return (sums[flat] / cnts[flat]).reshape(n, K)


def _bok_weights(K: int) -> np.ndarray:
    """W[r-1, k-1] = C(K-r, k-1) / C(K, k): probability that rank r is the best of a random k-subset."""
    from scipy.special import comb

    r = np.arange(1, K + 1)[:, None]
    k = np.arange(1, K + 1)[None, :]
    return comb(K - r, k - 1) / comb(K, k)


def best_of_k_curve(scores: Any, labels: Any) -> np.ndarray:
    """Exact expected best-of-k correctness per prompt, k = 1..K (spec "Exact best-of-k"): (n, K).

    Sort each prompt's responses by score and let c_(r) be the label at rank r; then
    ``BoK_q(k) = sum_r c_(r) * C(K - r, k - 1) / C(K, k)``: the chance that the RM's top choice among
    k responses drawn without replacement is correct. Score ties are broken uniformly at random in
    expectation (each c_(r) is replaced by the mean label of its tie group, which is exact because the
    formula is linear in the c_(r)). ``BoK(1)`` is the base accuracy (a random pick) and
    ``BoK(K)`` is the label of the RM's overall top choice.

    >>> best_of_k_curve([[0.9, 0.5, 0.1]], [[False, True, True]]).round(4).tolist()
    [[0.6667, 0.3333, 0.0]]
    """
    s, c = _check_bok(scores, labels)
    return _tie_averaged_sorted_labels(s, c) @ _bok_weights(s.shape[1])


def oracle_curve(labels: Any) -> np.ndarray:
    """The ground-truth (oracle) best-of-k curve (spec): ``GT_q(k) = 1 - C(K - n_c, k) / C(K, k)``.

    The chance that a random k-subset contains at least one correct response; an RM that ranks every
    correct response first attains it, and ``BoK_q(k) <= GT_q(k)`` for every RM. (n, K).

    >>> oracle_curve([[False, True, True]]).round(4).tolist()
    [[0.6667, 1.0, 1.0]]
    """
    from scipy.special import comb

    c = np.asarray(labels).astype(bool)
    if c.ndim != 2:
        raise ValueError(f"labels must be (n_prompts, K), got shape {c.shape}")
    K = c.shape[1]
    nc = c.sum(1)[:, None]
    k = np.arange(1, K + 1)[None, :]
    return 1.0 - comb(K - nc, k) / comb(K, k)


def roc_auc(scores: Any, labels: Any) -> float:
    """ROC-AUC of the scores against the correctness labels, pooled over all responses (spec summary
    value "ROC-AUC of s against c"; scikit-learn's ``roc_auc_score``). Pooling compares responses of
    different prompts, so it also rewards an RM whose scale is calibrated across prompts; the
    per-prompt variant is :func:`bok_pairwise_accuracy` with ``ties="half"``. NaN with one class only.

    >>> roc_auc([[0.9, 0.1], [0.8, 0.2]], [[True, False], [True, False]])
    1.0
    """
    from sklearn.metrics import roc_auc_score

    s, c = _check_bok(scores, labels)
    if c.all() or not c.any():
        return float("nan")
    return float(roc_auc_score(c.ravel(), s.ravel()))


def rowwise_pearson_bok(scores: Any, labels: Any) -> float:
    """Row-wise Pearson on a correctness set: mean over prompts of ``corr(s_q, c_q)`` across its K
    responses (the point-biserial correlation of score and correctness). Prompts whose labels or
    scores are constant have no correlation and are left out of the mean.

    >>> round(rowwise_pearson_bok([[2., 1., 0.], [0., 1., 2.]], [[True, False, False], [True, True, True]]), 4)
    0.866
    """
    s, c = _check_bok(scores, labels)
    cf = c.astype(float)
    ds = s - s.mean(1, keepdims=True)
    dc = cf - cf.mean(1, keepdims=True)
    den = np.sqrt((ds ** 2).sum(1) * (dc ** 2).sum(1))
    ok = den > 0
    if not ok.any():
        return float("nan")
    return float(np.round(np.mean((ds * dc).sum(1)[ok] / den[ok]), 12))


def bok_summary(scores: Any, labels: Any, ties: str = "wrong") -> dict[str, Any]:
    """Every best-of-K metric for one RM on one (domain's) correctness set.

    With the prompt-averaged curves ``BoK(k)`` (:func:`best_of_k_curve`) and ``GT(k)``
    (:func:`oracle_curve`):

    - ``base``: BoK(1), the accuracy of a random response (no RM);
    - ``max_bok`` = max_k BoK(k) and ``argmax_k``; ``end_bok`` = BoK(K) (the spec's "end score");
    - ``improvement`` = BoK(K) - BoK(1) ("end-to-end improvement over the base") and
      ``max_improvement`` = max_k BoK(k) - BoK(1);
    - ``gt_mse`` = mean_k (BoK(k) - GT(k))^2 ("error with respect to the ground truth", on the
      averaged curves);
    - ``auc_k``: area under the accuracy-vs-k curve for k in [1, K] (trapezoids), divided by K - 1 so
      that it is an average accuracy in [0, 1] (``oracle_auc_k`` the same for GT);
    - ``drop_after_peak`` = max_bok - end_bok (over-optimisation: > 0 when BoK falls as K grows);
    - ``pairwise_accuracy`` (:func:`bok_pairwise_accuracy`), ``roc_auc``, ``rowwise_pearson``;
    - ``curve``/``oracle``: the averaged curves as lists.
    """
    s, c = _check_bok(scores, labels)
    K = s.shape[1]
    curve = best_of_k_curve(s, c).mean(0)
    gt = oracle_curve(c).mean(0)
    area = (lambda y: float(np.trapezoid(y) / (K - 1)) if K > 1 else float(y[0]))
    return {
        "n_prompts": int(s.shape[0]), "K": int(K),
        "base": float(curve[0]), "max_bok": float(curve.max()), "argmax_k": int(curve.argmax() + 1),
        "end_bok": float(curve[-1]), "improvement": float(curve[-1] - curve[0]),
        "max_improvement": float(curve.max() - curve[0]), "drop_after_peak": float(curve.max() - curve[-1]),
        "gt_mse": float(np.mean((curve - gt) ** 2)), "auc_k": area(curve), "oracle_auc_k": area(gt),
        "pairwise_accuracy": bok_pairwise_accuracy(s, c, ties), "roc_auc": roc_auc(s, c),
        "rowwise_pearson": rowwise_pearson_bok(s, c),
        "curve": curve.tolist(), "oracle": gt.tolist(),
    }


def aggregate_domains(values: Mapping[str, float], quantiles: Sequence[float] = (0.1, 0.25)) -> dict[str, float]:
    """Aggregate one metric across domains (spec "Aggregation": mean, max, min and low quantiles).

    NaN values (a domain where the metric is undefined) are dropped. Quantiles use NumPy's linear
    interpolation.

    >>> {k: round(v, 4) for k, v in aggregate_domains({"a": 0.2, "b": 0.4, "c": 0.9}, quantiles=(0.5,)).items()}
    {'mean': 0.5, 'max': 0.9, 'min': 0.2, 'q50': 0.4}
    """
    v = np.array([x for x in values.values() if x is not None and np.isfinite(x)], float)
    if not len(v):
        return {"mean": float("nan"), "max": float("nan"), "min": float("nan"),
                **{f"q{round(q * 100)}": float("nan") for q in quantiles}}
    out = {"mean": float(v.mean()), "max": float(v.max()), "min": float(v.min())}
    out.update({f"q{round(q * 100)}": float(np.quantile(v, q)) for q in quantiles})
    return out


# -- bootstrap -----------------------------------------------------------------------------------------

def bootstrap_mean_ci(values: Any, n_boot: int = 1000, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean of ``values`` (NaNs dropped first, e.g. human-tied pairs).

    Resampling n values with replacement is one multinomial draw over the distinct values (few for
    0/1 correctness credits), so 100k pairs x 1,000 replicates take milliseconds; the same
    distribution as :func:`bootstrap_ci` with ``np.mean``.

    >>> lo, hi = bootstrap_mean_ci(np.r_[np.zeros(500), np.ones(500)])
    >>> 0.45 < lo < 0.5 < hi < 0.55
    True
    """
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    n = len(v)
    if n == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    uniq, inv = np.unique(v, return_inverse=True)
    freq = np.bincount(inv, minlength=len(uniq)) / n
    if len(uniq) * n_boot <= 20_000_000:
        means = rng.multinomial(n, freq, size=n_boot) @ uniq / n
    else:  # many distinct values: resample indices instead
        means = np.array([v[rng.integers(0, n, n)].mean() for _ in range(n_boot)])
    return float(np.quantile(means, (1 - level) / 2)), float(np.quantile(means, 1 - (1 - level) / 2))


def bootstrap_ci(stat: Callable[..., float], *arrays: Any, n_boot: int = 1000, level: float = 0.95,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of ``stat(*arrays)``, resampling rows (axis 0) jointly.

    Rows are pairs (human preference) or prompts (best-of-K: a prompt's K responses stay together).
    Replicates where the statistic is undefined (NaN) are dropped.

    >>> lo, hi = bootstrap_ci(np.mean, np.r_[np.zeros(50), np.ones(50)], n_boot=200)
    >>> 0.35 < lo < 0.5 < hi < 0.65
    True
    """
    arrs = [np.asarray(a) for a in arrays]
    n = len(arrs[0])
    if any(len(a) != n for a in arrs):
        raise ValueError("bootstrap_ci: all arrays need the same number of rows")
    if n == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    vals = np.empty(n_boot)
    for b in range(n_boot):
        idx = rng.integers(0, n, n)
        vals[b] = stat(*[a[idx] for a in arrs])
    vals = vals[np.isfinite(vals)]
    if not len(vals):
        return float("nan"), float("nan")
    return float(np.quantile(vals, (1 - level) / 2)), float(np.quantile(vals, 1 - (1 - level) / 2))
