import numpy as np
import pytest

from lmlab.tasks.two_hop import EOS, TwoHopTask, TwoHopTaskConfig


@pytest.fixture
def sample():
    task = TwoHopTask(TwoHopTaskConfig())
    return task, task.sample(500, np.random.default_rng(1))


def test_shapes_and_vocabulary(sample):
    task, s = sample
    assert task.d_vocab == 34 and task.n_ctx == 24 and task.answer_index == 20
    assert s.tokens.shape == (500, 25)
    assert s.tokens[:, :22].min() >= 4 and s.tokens[:, :22].max() <= 33
    assert (s.tokens[:, 22:] == EOS).all()


def test_entities_distinct_and_premises_in_place(sample):
    _, s = sample
    for i in range(50):
        assert len(set(s.chains[i].ravel())) == 15
        ctx = s.tokens[i]
        for c in range(5):
            src, brg, end = s.chains[i, c]
            p1, p2 = s.premise_pos[i, c]
            assert (ctx[p1], ctx[p1 + 1]) == (src, brg)
            assert (ctx[p2], ctx[p2 + 1]) == (brg, end)
            assert p1 < p2  # each chain's order is kept
        q = s.query_chain[i]
        assert ctx[20] == s.chains[i, q, 0] and ctx[21] == s.chains[i, q, 2]


def test_interleaving_is_uniform(sample):
    """Over 2K premises, a uniform interleaving puts chain c's first premise at slot 0 with probability 1/K."""
    task = TwoHopTask(TwoHopTaskConfig(n_chains=3, n_entities=9))
    s = task.sample(30000, np.random.default_rng(2))
    first_chain = np.argmax(s.premise_pos[:, :, 0] == 0, axis=1)
    freq = np.bincount(first_chain, minlength=3) / len(first_chain)
    np.testing.assert_allclose(freq, 1 / 3, atol=0.02)
    # 6!/(2!^3) = 90 equally likely orders: P(second premise of the first chain comes right after) = 1/5
    adjacent = np.mean(s.premise_pos[np.arange(30000), first_chain, 1] == 2)
    assert abs(adjacent - 1 / 5) < 0.02
    assert np.bincount(s.query_chain, minlength=3).min() > 9000


def test_batches_are_pure_functions_of_seed_and_step():
    t = TwoHopTask(TwoHopTaskConfig(), seed=5)
    a, b = t.batch(7, 8), t.batch(7, 8)
    assert (a.tokens == b.tokens).all()
    assert not (t.batch(8, 8).tokens == a.tokens).all()
    assert not (TwoHopTask(TwoHopTaskConfig(), seed=6).batch(7, 8).tokens == a.tokens).all()
    assert a.mask.sum() == 8 and a.mask[:, 20].all()
    assert (a.targets[:, 20].numpy() == t.sample(8, t.rng(7)).tokens[:, 21]).all()  # target is the End


def test_eval_set_differs_from_training_stream():
    t = TwoHopTask(TwoHopTaskConfig())
    assert not np.array_equal(t.eval_sample(16).tokens, t.sample(16, t.rng(0)).tokens)


def test_trim_after_answer_leaves_the_loss_unchanged():
    import torch

    from lmlab.nn import TinyConfig, TinyTransformer
    from lmlab.train import masked_cross_entropy

    t = TwoHopTask(TwoHopTaskConfig())
    torch.manual_seed(0)
    m = TinyTransformer(TinyConfig(d_vocab=t.d_vocab, n_ctx=t.n_ctx, d_model=16))
    full, trimmed = t.batch(3, 16), t.batch(3, 16, trim=True)
    assert trimmed.tokens.shape == (16, 21)
    a = masked_cross_entropy(m(full.tokens), full.targets, full.mask)
    b = masked_cross_entropy(m(trimmed.tokens), trimmed.targets, trimmed.mask)
    torch.testing.assert_close(a, b)


def test_positions_loss_equals_masked_loss():
    import torch

    from lmlab.nn import TinyConfig, TinyTransformer
    from lmlab.train import masked_cross_entropy

    t = TwoHopTask(TwoHopTaskConfig())
    torch.manual_seed(0)
    m = TinyTransformer(TinyConfig(d_vocab=t.d_vocab, n_ctx=t.n_ctx, d_model=16))
    b = t.batch(1, 8, trim=True)
    a = masked_cross_entropy(m(b.tokens), b.targets, b.mask)
    c = masked_cross_entropy(m(b.tokens, positions=b.positions), b.targets[:, b.positions], None)
    torch.testing.assert_close(a, c)
