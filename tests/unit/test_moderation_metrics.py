"""Detection metrics on hand-made score lists whose values are known by construction."""

import numpy as np
import pytest

from lmlab.moderation import metrics as M


def test_tpr_at_fpr_known_operating_point():
    # 10 negatives scored 0..9, 5 positives scored 3.5, 7.5, 8.5, 10, 11.
    # Flagging s >= 10 gives FPR 0/10 and TPR 2/5; s >= 8.5 flags negative 9 (FPR 0.1) and 3 positives (TPR 0.6);
    # s >= 7.5 flags 8, 9 (FPR 0.2) and 4 positives (0.8).
    neg = np.arange(10.0)
    pos = np.array([3.5, 7.5, 8.5, 10.0, 11.0])
    y = np.r_[np.zeros(10), np.ones(5)].astype(int)
    s = np.r_[neg, pos]
    assert M.tpr_at_fpr(y, s, 0.0) == pytest.approx(0.4)
    assert M.tpr_at_fpr(y, s, 0.05) == pytest.approx(0.4)  # FPR can only move in steps of 0.1: not interpolated
    assert M.tpr_at_fpr(y, s, 0.1) == pytest.approx(0.6)
    assert M.tpr_at_fpr(y, s, 0.19) == pytest.approx(0.6)
    assert M.tpr_at_fpr(y, s, 0.2) == pytest.approx(0.8)
    assert M.tpr_at_fpr(y, s, 1.0) == pytest.approx(1.0)


@pytest.mark.parametrize("seed", range(6))
def test_tpr_at_fpr_matches_bruteforce_sweep(seed):
    rng = np.random.default_rng(seed)
    n = 300
    y = (rng.random(n) < 0.3).astype(int)
    s = rng.normal(size=n) + 1.2 * y
    if seed % 2:
        s = np.round(s, 1)  # ties
    for tau in (0.001, 0.01, 0.05, 0.1, 0.3):
        assert M.tpr_at_fpr(y, s, tau) == pytest.approx(M.tpr_at_fpr_bruteforce(y, s, tau))


def test_perfect_and_reversed_scores():
    y = np.array([0, 0, 0, 1, 1])
    s = np.array([0.1, 0.2, 0.3, 0.8, 0.9])
    assert M.auroc(y, s) == 1.0 and M.auprc(y, s) == pytest.approx(1.0)
    assert M.tpr_at_fpr(y, s, 0.001) == 1.0
    assert M.acc_opt(y, s)[0] == 1.0 and M.f1_best(y, s)[0] == pytest.approx(1.0)
    assert M.acc_opt(y, s, paper_strict=True)[0] == 0.8  # the paper code's strict ">" misses the perfect cut
    assert M.auroc(y, -s) == 0.0
    assert M.tpr_at_fpr(y, -s, 0.001) == 0.0


def test_hand_computed_auprc_f1_acc():
    # ranking (high to low): +, -, +, -  -> PR points (r, p): (0,1) (0.5,1) (0.5,0.5) (1,2/3) (1,0.5)
    y = np.array([1, 0, 1, 0])
    s = np.array([4.0, 3.0, 2.0, 1.0])
    # sklearn's PR curve keeps (0.5, 1), (0.5, 0.5), (1, 2/3), (1, 0.5) plus (0, 1); trapezoid area:
    # 0.5 * (1 + 1) / 2 + 0 + 0.5 * (0.5 + 2/3) / 2 + 0 = 0.5 + 0.29167
    assert M.auprc(y, s) == pytest.approx(0.5 + 0.5 * (0.5 + 2 / 3) / 2)
    assert M.average_prec(y, s) == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    f1, thr = M.f1_best(y, s)
    assert f1 == pytest.approx(0.8) and thr == 2.0  # flag the top 3: P 2/3, R 1
    acc, _ = M.acc_opt(y, s)
    assert acc == pytest.approx(0.75)
    assert M.auroc(y, s) == pytest.approx(0.75)


@pytest.mark.parametrize("seed", range(4))
def test_acc_opt_matches_bruteforce(seed):
    rng = np.random.default_rng(seed)
    y = (rng.random(80) < 0.4).astype(int)
    s = np.round(rng.normal(size=80) + y, 1)
    best = max(((s >= t) == y).mean() for t in np.r_[np.unique(s), np.inf])
    acc, thr = M.acc_opt(y, s)
    assert acc == pytest.approx(best) and ((s >= thr) == y).mean() == pytest.approx(best)
    assert M.acc_opt(y, s, paper_strict=True)[0] <= acc + 1e-12


def test_random_scorer_auroc_near_half():
    rng = np.random.default_rng(0)
    y = (rng.random(4000) < 0.3).astype(int)
    assert abs(M.auroc(y, rng.random(4000)) - 0.5) < 0.03


def test_evaluate_keys_and_resolution():
    y = np.r_[np.zeros(50), np.ones(10)].astype(int)
    s = np.r_[np.zeros(50), np.ones(10)] + np.linspace(0, 0.5, 60)
    r = M.evaluate(y, s)
    assert {"auprc", "auroc", "acc_opt", "f1_best", "tpr_at_fpr_0.1pct", "tpr_at_fpr_1pct", "tpr_at_fpr_10pct"} <= set(r)
    assert r["fpr_resolution"] == pytest.approx(1 / 50) and r["n_neg"] == 50


@pytest.mark.slow
def test_bootstrap_intervals_and_paired_difference():
    rng = np.random.default_rng(1)
    y = (rng.random(200) < 0.3).astype(int)
    good = y + rng.normal(0, 0.5, 200)
    noise = rng.normal(size=200)
    b = M.bootstrap(y, {"good": good, "noise": noise}, n_boot=30, seed=0, pairs=[("good", "noise")])
    lo, hi = b["detectors"]["good"]["auroc"]
    assert lo <= M.auroc(y, good) <= hi and lo > 0.8
    nlo, nhi = b["detectors"]["noise"]["auroc"]
    assert nlo < 0.5 < nhi
    assert b["differences"]["good - noise"]["auprc"][0] > 0
    # stratified: every resample keeps the class counts
    idx = M.bootstrap_indices(y, 5, 0)
    assert (y[idx].sum(1) == y.sum()).all()


def test_bad_inputs():
    with pytest.raises(ValueError, match="both classes"):
        M.auroc([1, 1], [0.1, 0.2])
    with pytest.raises(ValueError, match="same length"):
        M.auprc([0, 1], [0.1])
    with pytest.raises(ValueError, match="0 .benign. or 1"):
        M.auroc([0, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match="NaN"):
        M.auroc([0, 1], [0.1, float("nan")])
