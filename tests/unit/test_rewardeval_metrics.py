"""PPE metrics: each against a value computed by hand on a small example, plus property tests."""

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lmlab.rewardeval import metrics as M

# -- human preference: hand-computed values ------------------------------------------------------------


def test_pairwise_accuracy_by_hand():
    margin = [2.0, -1.0, 0.0, 3.0, -0.5]
    label = [1, 1, 1, -1, 0]  # right, wrong, RM tie, wrong, (human tie: excluded)
    assert M.pairwise_accuracy(margin, label) == pytest.approx(1 / 4)
    assert M.pairwise_accuracy(margin, label, rm_ties="half") == pytest.approx(1.5 / 4)
    assert math.isnan(M.pairwise_accuracy([1.0], [0]))


def test_accuracy_by_domain_by_hand():
    out = M.accuracy_by_domain([1, -1, 1, 1, 2], [1, 1, -1, 0, 1], ["en", "en", "de", "de", "de"])
    assert out == {"de": {"accuracy": 0.5, "n": 2}, "en": {"accuracy": 0.5, "n": 2}}


def test_preference_labels_and_outcomes():
    assert M.preference_labels(["model_b", "tie", "model_a"]).tolist() == [-1, 0, 1]
    with pytest.raises(ValueError, match="not one of"):
        M.preference_labels(["a"])
    assert M.vote_outcomes([0.2, -1, 0]).tolist() == [1.0, 0.0, 0.5]
    assert M.label_outcomes([1, -1, 0]).tolist() == [1.0, 0.0, 0.5]


def test_bradley_terry_two_models_by_hand():
    # x beats y 3 times out of 4 (one of the wins written from y's side): beta_x - beta_y = ln 3
    b = M.bradley_terry(["x", "y", "x", "y"], ["y", "x", "y", "x"], [1, 0, 1, 1], ridge=0.0)
    assert b["x"] - b["y"] == pytest.approx(math.log(3), abs=1e-8)
    assert b["x"] + b["y"] == pytest.approx(0.0, abs=1e-12)
    # a tie is half a win each: 1 win + 1 tie vs 0 wins -> 1.5 : 0.5 -> ln 3
    b = M.bradley_terry(["x", "x"], ["y", "y"], [1, 0.5], ridge=0.0)
    assert b["x"] - b["y"] == pytest.approx(math.log(3), abs=1e-8)


@pytest.mark.slow  # importing scikit-learn takes seconds on a busy machine
def test_bradley_terry_matches_sklearn_logistic_regression():
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    ia = rng.integers(0, 4, 400)
    ib = (ia + rng.integers(1, 4, 400)) % 4
    true = np.array([1.0, 0.3, -0.2, -1.1])
    y = (rng.random(400) < 1 / (1 + np.exp(-(true[ia] - true[ib])))).astype(float)
    # scikit-learn minimises ||w||^2 / 2 + C * log-loss: the same optimum as ridge = 1 / C
    b = M.bradley_terry(ia, ib, y, models=range(4), ridge=0.5)
    X = np.zeros((400, 4))
    X[np.arange(400), ia] = 1
    X[np.arange(400), ib] = -1
    lr = LogisticRegression(fit_intercept=False, C=2.0, tol=1e-10, max_iter=1000).fit(X, y)
    ref = lr.coef_[0]
    assert np.allclose([b[i] for i in range(4)], ref, atol=1e-4)


def test_bradley_terry_recovers_known_scores():
    rng = np.random.default_rng(1)
    true = np.array([1.0, 0.5, 0.0, -0.4, -1.1])
    n = 20000
    ia = rng.integers(0, 5, n)
    ib = (ia + rng.integers(1, 5, n)) % 5
    y = (rng.random(n) < 1 / (1 + np.exp(-(true[ia] - true[ib])))).astype(float)
    b = M.bradley_terry(ia, ib, y, models=range(5))
    assert np.allclose([b[i] for i in range(5)], true - true.mean(), atol=0.06)


def test_rank_correlations_by_hand():
    r = M.rank_correlations({"a": 1, "b": 2, "c": 3, "d": 4}, {"a": 1, "b": 3, "c": 2, "d": 4})
    assert r["spearman"] == pytest.approx(1 - 6 * 2 / (4 * 15))  # sum d^2 = 2
    assert r["kendall"] == pytest.approx((5 - 1) / 6)  # one discordant pair of six


def test_win_rate_matrix_by_hand():
    names, W = M.win_rate_matrix(["a", "a", "b", "a"], ["b", "b", "a", "c"], [1, 0, 0.5, 1])
    assert names == ["a", "b", "c"]
    # a vs b: 1 + 0 + (tie from b's side: 0.5) = 1.5 of 3
    assert W[0, 1] == pytest.approx(0.5) and W[1, 0] == pytest.approx(0.5)
    assert W[0, 2] == 1.0 and W[2, 0] == 0.0
    assert np.isnan(W[1, 2]) and np.isnan(W[0, 0])


def test_rowwise_pearson_by_hand():
    W_h = np.array([[np.nan, 0.8, 0.9], [0.2, np.nan, 0.6], [0.1, 0.4, np.nan]])
    W_rm = np.array([[np.nan, 0.9, 0.8], [0.1, np.nan, 0.7], [0.2, 0.3, np.nan]])
    # each row has two opponents: corr is +1 or -1 by the sign of the two differences
    # row 0: (.9,.8) vs (.8,.9) -> -1; row 1: (.1,.7) vs (.2,.6) -> +1; row 2: (.2,.3) vs (.1,.4) -> +1
    assert M.rowwise_pearson(W_rm, W_h) == pytest.approx(1 / 3)


def _boot(centres, width=0.4, n=200, seed=0):
    rng = np.random.default_rng(seed)
    return np.asarray(centres)[None, :] + rng.uniform(-width, width, (n, len(centres)))


def test_separability_and_confidence_agreement_by_hand():
    rm = _boot([2.5, 0.5, 1.0])  # CIs about [2.1, 2.9], [0.1, 0.9], [0.6, 1.4]
    assert M.separability(rm) == pytest.approx(2 / 3)  # (0,1), (0,2) disjoint; (1,2) overlap
    ref = _boot([0.0, 3.0, 1.5], seed=1)  # (0,1): opposite, (0,2): opposite, (1,2): separated, rm not
    assert M.confidence_agreement(rm, ref) == pytest.approx((-1 - 1 + 0) / 3)
    assert M.confidence_agreement(rm, rm) == pytest.approx(2 / 3)


def test_brier_by_hand():
    rm = {"a": 1.0, "b": 0.0, "c": -1.0}
    ref = {"a": 3.0, "b": 1.0, "c": 2.0}  # human order a > c > b
    s = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    # pairs (a,b): target 1, p = s(1); (a,c): target 1, p = s(2); (b,c): target 0, p = s(1)
    expect = ((s(1) - 1) ** 2 + (s(2) - 1) ** 2 + (s(1) - 0) ** 2) / 3
    assert M.brier_score(rm, ref) == pytest.approx(expect)


def test_preference_metrics_with_a_perfect_and_a_random_rm():
    rng = np.random.default_rng(0)
    true = np.linspace(1.5, -1.5, 6)
    n = 6000
    ia = rng.integers(0, 6, n)
    ib = (ia + rng.integers(1, 6, n)) % 6
    p = 1 / (1 + np.exp(-(true[ia] - true[ib])))
    label = np.where(rng.random(n) < p, 1, -1)
    a, b = [f"m{i}" for i in ia], [f"m{i}" for i in ib]
    perfect = M.preference_metrics(label * 1.0, label, a, b, n_boot=50)
    assert perfect["accuracy"] == 1.0 and perfect["spearman"] == pytest.approx(1.0)
    assert perfect["confidence_agreement"] == pytest.approx(perfect["separability_human"]) and perfect["separability_human"] > 0.9
    rand = M.preference_metrics(rng.normal(size=n), label, a, b, n_boot=50)
    assert abs(rand["accuracy"] - 0.5) < 0.03
    assert abs(rand["confidence_agreement"]) < 0.3 and rand["separability"] < 0.3
    assert rand["brier"] > perfect["brier"]
    only_acc = M.preference_metrics([1.0, -1.0], [1, 1])
    assert only_acc["accuracy"] == 0.5 and only_acc["spearman"] is None


# -- best-of-K: hand-computed values ---------------------------------------------------------------------

S3 = [[0.9, 0.5, 0.1]]
C3 = [[False, True, True]]


def test_best_of_k_curve_by_hand():
    # k=1: mean = 2/3; k=2: subsets {0,1}->0 (F), {0,2}->0 (F), {1,2}->1 (T) = 1/3; k=3: top is 0 (F)
    assert np.allclose(M.best_of_k_curve(S3, C3), [[2 / 3, 1 / 3, 0.0]])
    assert np.allclose(M.oracle_curve(C3), [[2 / 3, 1.0, 1.0]])


def test_best_of_k_ties_are_broken_at_random_in_expectation():
    # all scores equal: the chosen response is a uniform pick whatever k, so BoK(k) = mean label
    assert np.allclose(M.best_of_k_curve([[1.0] * 4], [[True, False, False, False]]), 0.25)
    # a tie at the top between a correct and an incorrect response: BoK(K) = 1/2
    assert M.best_of_k_curve([[2.0, 2.0, 0.0]], [[True, False, False]])[0, -1] == pytest.approx(0.5)


def _bok_brute(s, c, k):
    """Average over all k-subsets of the label of the top-scored member (ties split evenly)."""
    vals = []
    for sub in itertools.combinations(range(len(s)), k):
        top = max(s[j] for j in sub)
        vals.append(np.mean([c[j] for j in sub if s[j] == top]))
    return float(np.mean(vals))


def test_best_of_k_matches_enumeration_and_monte_carlo():
    rng = np.random.default_rng(3)
    s = rng.integers(0, 4, (5, 7)).astype(float)  # many ties
    c = rng.random((5, 7)) < 0.4
    curve = M.best_of_k_curve(s, c)
    for q in range(5):
        for k in range(1, 8):
            assert curve[q, k - 1] == pytest.approx(_bok_brute(s[q], c[q], k))
    # the spec's oracle: Monte-Carlo estimate within sampling error (continuous scores, K=32, k=8)
    s = rng.normal(size=(1, 32))
    c = rng.random((1, 32)) < 0.3
    draws = np.argsort(rng.random((20000, 32)), axis=1)[:, :8]  # 20,000 random 8-subsets
    mc = c[0][draws[np.arange(len(draws)), s[0][draws].argmax(1)]].mean()
    assert abs(M.best_of_k_curve(s, c)[0, 7] - mc) < 4 * math.sqrt(0.25 / 20000)


def test_bok_pairwise_accuracy_by_hand():
    assert M.bok_pairwise_accuracy([[3.0, 2.0, 1.0]], [[True, False, True]]) == 0.5
    s, c = [[1.0, 1.0, 0.0], [5.0, 1.0, 2.0]], [[True, False, False], [False, False, True]]
    # row 0: (0 vs 1) tie, (0 vs 2) win -> 1/2 strict, 3/4 half; row 1: (2 vs 0) lose, (2 vs 1) win -> 1/2
    assert M.bok_pairwise_accuracy(s, c) == pytest.approx((0.5 + 0.5) / 2)
    assert M.bok_pairwise_accuracy(s, c, ties="half") == pytest.approx((0.75 + 0.5) / 2)
    assert np.isnan(M.bok_pairwise_accuracy([[1.0, 2.0]], [[True, True]], per_row=True)).all()


def test_roc_auc_and_rowwise_pearson_by_hand():
    # pooled: positives {0.9, 0.4}, negatives {0.5, 0.1}: 3 of 4 ordered pairs right
    assert M.roc_auc([[0.9, 0.5], [0.4, 0.1]], [[True, False], [True, False]]) == pytest.approx(0.75)
    # row [2,1,0] vs [1,0,0]: centred dot 1, norms sqrt(2) and sqrt(2/3) -> 0.866; second row constant labels
    r = M.rowwise_pearson_bok([[2.0, 1.0, 0.0], [0.0, 1.0, 2.0]], [[True, False, False], [True, True, True]])
    assert r == pytest.approx(1 / math.sqrt(2 * 2 / 3))


def test_bok_summary_by_hand():
    out = M.bok_summary(S3, C3)
    assert out["base"] == pytest.approx(2 / 3) and out["end_bok"] == 0.0 and out["max_bok"] == pytest.approx(2 / 3)
    assert out["improvement"] == pytest.approx(-2 / 3) and out["argmax_k"] == 1
    assert out["gt_mse"] == pytest.approx((0 + (2 / 3) ** 2 + 1) / 3)
    assert out["auc_k"] == pytest.approx(((2 / 3 + 1 / 3) / 2 + (1 / 3) / 2) / 2)
    assert out["drop_after_peak"] == pytest.approx(2 / 3)


def test_aggregate_domains_by_hand():
    out = M.aggregate_domains({"a": 0.2, "b": 0.4, "c": 0.9, "d": float("nan")}, quantiles=(0.25,))
    assert out == {"mean": pytest.approx(0.5), "max": 0.9, "min": 0.2, "q25": pytest.approx(0.3)}


def test_bootstrap_ci_covers_and_narrows():
    rng = np.random.default_rng(0)
    small = M.bootstrap_ci(np.mean, rng.random(50) < 0.3, n_boot=300)
    big = M.bootstrap_ci(np.mean, rng.random(5000) < 0.3, n_boot=300)
    assert small[0] < 0.3 < small[1] and big[0] < 0.3 < big[1]
    assert big[1] - big[0] < (small[1] - small[0]) / 4


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="n_prompts, K"):
        M.best_of_k_curve([1.0, 2.0], [True, False])
    with pytest.raises(ValueError, match="finite"):
        M.bok_summary([[np.nan, 1.0]], [[True, False]])
    with pytest.raises(ValueError, match="labels"):
        M.pairwise_accuracy([1.0, 2.0], [1])


# -- properties ---------------------------------------------------------------------------------------------

pairs = st.integers(1, 40).flatmap(lambda n: st.tuples(
    st.lists(st.floats(-5, 5, allow_nan=False), min_size=n, max_size=n),
    st.lists(st.sampled_from([-1, 0, 1]), min_size=n, max_size=n)))


@settings(max_examples=25, deadline=None)
@given(pairs)
def test_accuracy_is_invariant_to_response_order(data):
    m, y = np.array(data[0]), np.array(data[1])
    a, b = M.pairwise_accuracy(m, y), M.pairwise_accuracy(-m, -y)
    assert (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b)


@settings(max_examples=25, deadline=None)
@given(pairs)
def test_perfect_rm_gets_accuracy_one_and_reversed_zero(data):
    y = np.array(data[1])
    if not (y != 0).any():
        return
    mag = np.abs(np.array(data[0])) + 0.1
    assert M.pairwise_accuracy(y * mag, y) == 1.0
    assert M.pairwise_accuracy(-y * mag, y) == 0.0


bok_rows = st.tuples(st.integers(1, 6), st.integers(2, 9), st.integers(0, 10_000))


def _bok_data(n, K, seed, ties=False):
    rng = np.random.default_rng(seed)
    s = rng.integers(0, 3, (n, K)).astype(float) if ties else rng.normal(size=(n, K))
    c = rng.random((n, K)) < rng.random((n, 1))
    return s, c


@settings(max_examples=25, deadline=None)
@given(bok_rows, st.booleans())
def test_bok_is_bounded_by_the_oracle_and_starts_at_the_base(shape, ties):
    s, c = _bok_data(*shape, ties=ties)
    bok, gt = M.best_of_k_curve(s, c), M.oracle_curve(c)
    assert (bok <= gt + 1e-12).all() and (bok >= -1e-12).all()
    assert np.allclose(bok[:, 0], c.mean(1)) and np.allclose(gt[:, 0], c.mean(1))


@settings(max_examples=25, deadline=None)
@given(bok_rows)
def test_a_perfect_rm_attains_the_oracle(shape):
    s, c = _bok_data(*shape)
    perfect = c + 0.01 * np.random.default_rng(0).random(c.shape)
    assert np.allclose(M.best_of_k_curve(perfect, c), M.oracle_curve(c))
    acc = M.bok_pairwise_accuracy(perfect, c)
    mixed = (c.any(1) & ~c.all(1)).any()
    assert (acc == 1.0) if mixed else math.isnan(acc)


@settings(max_examples=25, deadline=None)
@given(bok_rows, st.booleans())
def test_bok_metrics_ignore_response_order_and_monotone_rescaling(shape, ties):
    s, c = _bok_data(*shape, ties=ties)
    perm = np.random.default_rng(shape[2]).permutation(s.shape[1])
    for s2, c2 in ((s[:, perm], c[:, perm]), (np.exp(s) * 3 + 1, c)):
        assert np.allclose(M.best_of_k_curve(s2, c2), M.best_of_k_curve(s, c))
        a, b = M.bok_pairwise_accuracy(s2, c2, ties="half"), M.bok_pairwise_accuracy(s, c, ties="half")
        assert (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b)


def test_random_scorer_is_at_chance():
    rng = np.random.default_rng(0)
    c = rng.random((2000, 16)) < 0.4
    s = rng.normal(size=c.shape)
    assert abs(M.bok_pairwise_accuracy(s, c) - 0.5) < 0.02
    assert abs(M.roc_auc(s, c) - 0.5) < 0.02
    assert abs(M.bok_summary(s, c)["improvement"]) < 0.03


@settings(max_examples=15, deadline=None)
@given(st.integers(3, 7), st.integers(0, 1000))
def test_identical_leaderboards_agree_fully(n_models, seed):
    boot = np.sort(_boot(np.arange(n_models) * 2.0, seed=seed), axis=1)
    assert M.confidence_agreement(boot, boot) == pytest.approx(M.separability(boot)) == pytest.approx(1.0)
    assert M.confidence_agreement(boot, boot[:, ::-1]) == pytest.approx(-1.0)
    names = [f"m{i}" for i in range(n_models)]
    beta = dict(zip(names, np.arange(n_models, dtype=float)))
    rev = dict(zip(names, -np.arange(n_models, dtype=float)))
    assert M.rank_correlations(beta, beta) == {"spearman": pytest.approx(1.0), "kendall": pytest.approx(1.0)}
    assert M.rank_correlations(beta, rev)["kendall"] == pytest.approx(-1.0)
    assert M.brier_score({k: 10 * v for k, v in beta.items()}, beta) < 1e-6


votes = st.integers(3, 60).flatmap(lambda n: st.tuples(
    st.lists(st.integers(0, 3), min_size=n, max_size=n), st.lists(st.integers(1, 3), min_size=n, max_size=n),
    st.lists(st.sampled_from([0.0, 0.5, 1.0]), min_size=n, max_size=n)))


@settings(max_examples=25, deadline=None)
@given(votes)
def test_leaderboards_do_not_depend_on_which_side_a_model_sat(data):
    ia = np.array(data[0])
    ib = (ia + np.array(data[1])) % 4
    y = np.array(data[2])
    b1 = M.bradley_terry(ia, ib, y, models=range(4))
    b2 = M.bradley_terry(ib, ia, 1 - y, models=range(4))
    assert np.allclose([b1[i] for i in range(4)], [b2[i] for i in range(4)], atol=1e-8)
    _, W = M.win_rate_matrix(ia, ib, y, models=range(4))
    off = ~np.eye(4, dtype=bool) & np.isfinite(W)
    assert np.allclose((W + W.T)[off], 1.0)
    _, W2 = M.win_rate_matrix(ib, ia, 1 - y, models=range(4))
    assert np.allclose(W[off], W2[off])
    rp = M.rowwise_pearson(W, W)
    assert math.isnan(rp) or rp == pytest.approx(1.0)


@settings(max_examples=25, deadline=None)
@given(pairs, st.integers(1, 4))
def test_domain_accuracies_average_to_the_overall_accuracy(data, n_domains):
    m, y = np.array(data[0]), np.array(data[1])
    dom = [f"d{i % n_domains}" for i in range(len(m))]
    by = M.accuracy_by_domain(m, y, dom)
    n = sum(v["n"] for v in by.values())
    if n:
        pooled = sum(v["accuracy"] * v["n"] for v in by.values() if v["n"]) / n
        assert pooled == pytest.approx(M.pairwise_accuracy(m, y))


@settings(max_examples=25, deadline=None)
@given(bok_rows)
def test_auc_and_rowwise_pearson_properties(shape):
    s, c = _bok_data(*shape)
    a = M.roc_auc(s, c)
    if not math.isnan(a):
        assert M.roc_auc(np.exp(s), c) == pytest.approx(a) and M.roc_auc(c + 0.0, c) == 1.0
    r = M.rowwise_pearson_bok(s, c)
    if not math.isnan(r):
        scaled = s * (1 + np.arange(s.shape[0]))[:, None] + 5  # a positive affine map per prompt
        assert M.rowwise_pearson_bok(scaled, c) == pytest.approx(r)
        assert M.rowwise_pearson_bok(c + 0.0, c) == pytest.approx(1.0)
        assert -1 - 1e-9 <= r <= 1 + 1e-9


@settings(max_examples=25, deadline=None)
@given(st.lists(st.floats(0, 1), min_size=1, max_size=12))
def test_aggregates_are_ordered(values):
    agg = M.aggregate_domains({f"d{i}": v for i, v in enumerate(values)})
    assert agg["min"] <= agg["q10"] <= agg["q25"] <= agg["max"]
    assert agg["min"] - 1e-9 <= agg["mean"] <= agg["max"] + 1e-9


def test_fast_mean_bootstrap_matches_the_generic_one():
    v = np.random.default_rng(2).choice([0.0, 0.5, 1.0], 400, p=[0.5, 0.1, 0.4])
    fast = M.bootstrap_mean_ci(v, n_boot=4000)
    slow = M.bootstrap_ci(np.mean, v, n_boot=4000)
    assert np.allclose(fast, slow, atol=0.015)
    assert M.bootstrap_mean_ci(np.r_[v, np.nan, np.nan], n_boot=4000) == fast  # NaNs (human ties) dropped first


@settings(max_examples=25, deadline=None)
@given(st.lists(st.floats(-3, 3), min_size=2, max_size=6), st.lists(st.floats(-3, 3), min_size=2, max_size=6))
def test_brier_is_a_bounded_loss(xs, ys):
    k = min(len(xs), len(ys))
    b = M.brier_score(dict(enumerate(xs[:k])), dict(enumerate(ys[:k])))
    assert 0.0 <= b <= 1.0
