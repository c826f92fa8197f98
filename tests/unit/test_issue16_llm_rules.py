"""Statistics behind the LLM studies' rewritten claims: Holm correction, one-sided Wilcoxon, TPR at low FPR with
its exact interval, the null reward model and the random re-initialisation of an LM."""

import numpy as np
import pytest

from lmlab.studies.reward_eval import _holm, _wilcoxon_greater


def test_holm_adjusts_step_down_and_stays_monotone():
    adj = _holm({"a": 0.01, "b": 0.04, "c": 0.03})
    assert adj["a"] == pytest.approx(0.03) and adj["c"] == pytest.approx(0.06) and adj["b"] == pytest.approx(0.06)
    assert _holm({}) == {}


def test_wilcoxon_one_sided():
    assert _wilcoxon_greater(np.zeros(10)) == 1.0
    assert _wilcoxon_greater(np.r_[np.ones(12), np.zeros(5)]) < 0.01
    assert _wilcoxon_greater(-np.ones(12)) > 0.9


def test_wilcoxon_one_sided_equals_scipys_on_ties_and_small_samples():
    """The vectorized exact permutation path gives SciPy's own p-value (ties, zeros, n <= 13, and beyond; SciPy's
    own path calls its statistic once per sign flip, so the sizes checked against it stay small)."""
    from scipy.stats import wilcoxon

    rng = np.random.default_rng(0)
    cases = [rng.choice([-1.0, -0.5, 0.0, 0.25, 0.5, 1.0, 1 / 3], size=n) for n in (1, 2, 3, 4, 5, 6, 6, 6)]
    # no zeros, 20 values: SciPy's normal approximation
    cases += [rng.choice([-1.0, 0.5, 1.0, 1 / 3], size=20) for _ in range(2)]
    for d in cases:
        nz = d[d != 0]
        want = float(wilcoxon(nz, alternative="greater").pvalue) if len(nz) else 1.0
        assert _wilcoxon_greater(d) == pytest.approx(want, rel=1e-12, abs=1e-15), d


def test_low_fpr_counts_false_positives_and_gives_an_exact_interval():
    from lmlab.studies.muli import low_fpr

    rng = np.random.default_rng(0)
    y = np.r_[np.ones(300), np.zeros(2000)].astype(int)
    s = np.r_[rng.normal(2, 1, 300), rng.normal(0, 1, 2000)]
    r = low_fpr(y, s, 0.001)
    assert r["resolvable"] and r["fp"] <= 2 and r["n_neg"] == 2000
    assert r["tp"] == round(r["tpr"] * 300) and r["tpr_ci95"][0] <= r["tpr"] <= r["tpr_ci95"][1]


def test_random_reward_model_is_reproducible_and_ignores_quality():
    from lmlab.rewardeval.models import build_rm

    rm = build_rm("random:3")
    a = rm.score_batch(["q", "q"], ["right", "wrong"])
    assert np.array_equal(a, build_rm("random:3").score_batch(["q", "q"], ["right", "wrong"]))
    assert not np.array_equal(a, build_rm("random:4").score_batch(["q", "q"], ["right", "wrong"]))
    assert ((0 <= a) & (a < 1)).all()


def test_randomize_weights_changes_the_model_and_its_fingerprint():
    pytest.importorskip("transformers")
    from lmlab.lm.control import randomize_weights
    from lmlab.lm.testing import tiny_hf_lm

    lm = tiny_hf_lm()
    before, fp = lm.next_token_logits(["abc"]), lm.fingerprint
    randomize_weights(lm, seed=1)
    assert lm.fingerprint != fp and not np.allclose(before.numpy(), lm.next_token_logits(["abc"]).numpy())
