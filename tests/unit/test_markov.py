"""Markov sources: exact entropy rates against closed forms, stationarity, seeding."""

import math

import numpy as np
import pytest

from lmlab.config import ConfigError
from lmlab.tasks.markov import MarkovConfig, MarkovSource, binary_entropy, stationary_contexts


@pytest.mark.parametrize("k, delta", [(1, 0.2), (2, 0.2), (4, 0.1), (3, 0.45)])
def test_switching_entropy_rate_is_binary_entropy_of_delta(k, delta):
    src = MarkovSource(MarkovConfig(kind="switching", order=k, delta=delta))
    assert src.entropy_rate == pytest.approx(-delta * math.log(delta) - (1 - delta) * math.log(1 - delta), abs=1e-12)
    assert src.unigram_entropy == pytest.approx(math.log(2), abs=1e-12)
    assert np.allclose(src.stationary, 1 / 2**k)


def test_first_order_chain_entropy_rate_closed_form():
    # P = [[1-p, p], [q, 1-q]]: pi = (q, p) / (p + q), H = pi_0 H_b(p) + pi_1 H_b(q).
    p, q = 0.3, 0.1
    P = np.array([[1 - p, p], [q, 1 - q]])
    pi = stationary_contexts(P, 2)
    assert pi == pytest.approx([q / (p + q), p / (p + q)])
    src = MarkovSource(MarkovConfig(kind="random", order=1, chain_seed=5))
    src.transition = P  # the closed form, through the same code path
    h = float(pi @ np.array([binary_entropy(p), binary_entropy(q)]))
    assert h == pytest.approx(0.25 * binary_entropy(0.3) + 0.75 * binary_entropy(0.1))


def test_random_chain_stationary_and_entropy_rate_match_samples():
    src = MarkovSource(MarkovConfig(kind="random", order=3, chain_seed=1), seed=0)
    assert src.transition.shape == (8, 2) and np.allclose(src.transition.sum(1), 1)
    assert np.allclose(src.stationary @ _context_matrix(src), src.stationary)
    x = src.sample(200, 300, src.rng(0))
    # the empirical log-loss of the true model converges to the entropy rate (plus the start-up term k ln 2 / n)
    assert -src.log_likelihood(x).sum() / x.size == pytest.approx(src.entropy_rate, abs=0.02)
    assert np.bincount(x.ravel(), minlength=2) / x.size == pytest.approx(src.unigram, abs=0.02)


def test_one_long_text_equals_the_batched_sampler():
    src = MarkovSource(MarkovConfig(kind="random", order=2, alphabet_size=3, chain_seed=2), seed=1)
    rng_a, rng_b = src.rng(9), src.rng(9)
    one = src.sample(1, 500, rng_a)
    ctx0, u = rng_b.choice(src.n_contexts, size=1, p=src.stationary), rng_b.random((1, 498))
    x = list(divmod(int(ctx0[0]), 3))
    cum = np.cumsum(src.transition, axis=1)
    for t in range(498):
        x.append(int((u[0, t] > cum[x[-2] * 3 + x[-1]][:-1]).sum()))
    assert one[0].tolist() == x


def test_larger_alphabet_random_chain():
    src = MarkovSource(MarkovConfig(kind="random", order=2, alphabet_size=3, chain_seed=0))
    assert src.alphabet == "012" and src.stationary.shape == (9,)
    assert 0 < src.entropy_rate < src.unigram_entropy <= math.log(3) + 1e-12
    assert set(src.sample_text(2, 50, src.rng(1))[0]) <= set("012")


def test_switching_samples_flip_with_probability_delta():
    src = MarkovSource(MarkovConfig(kind="switching", order=2, delta=0.2), seed=3)
    x = src.sample(16, 500, src.rng(7))
    assert (x[:, 2:] != x[:, :-2]).mean() == pytest.approx(0.2, abs=0.02)


def test_samples_are_a_pure_function_of_seed_and_step():
    src = MarkovSource(MarkovConfig(kind="switching", order=4, delta=0.1), seed=3)
    assert np.array_equal(src.sample(4, 30, src.rng(5)), src.sample(4, 30, src.rng(5)))
    assert not np.array_equal(src.sample(4, 30, src.rng(5)), src.sample(4, 30, src.rng(6)))
    other = MarkovSource(MarkovConfig(kind="switching", order=4, delta=0.1), seed=4)
    assert not np.array_equal(src.sample(4, 30, src.rng(5)), other.sample(4, 30, other.rng(5)))


def test_block_entropy():
    src = MarkovSource(MarkovConfig(kind="switching", order=2, delta=0.2))
    assert src.block_entropy(2) == pytest.approx(2 * math.log(2))
    assert src.block_entropy(10) == pytest.approx(2 * math.log(2) + 8 * binary_entropy(0.2))


@pytest.mark.parametrize("kw, message", [
    ({"order": 0}, "order must be >= 1"),
    ({"delta": 1.0}, "delta must be in (0, 1)"),
    ({"alphabet_size": 3}, "must be 2 for kind='switching'"),
    ({"kind": "random", "order": 13}, "at most 4096"),
])
def test_bad_configs_name_the_field(kw, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        MarkovConfig(**kw)


def _context_matrix(src):
    n, m = src.n_contexts, src.m
    T = np.zeros((n, n))
    for a in range(m):
        T[np.arange(n), (np.arange(n) * m + a) % n] += src.transition[:, a]
    return T
