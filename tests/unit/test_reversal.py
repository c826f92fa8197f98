"""Reversal-curse pieces: the bilinear model's gradient and dynamics, the data sets, the chance statistics."""

import math

import numpy as np
import pytest
import torch

from lmlab.config import ConfigError
from lmlab.nn.bilinear import bilinear_grad, bilinear_logits, bilinear_loss, make_embeddings, train_bilinear
from lmlab.studies.reversal_curse import answer_stats, exchangeable_groups, summarize_stats
from lmlab.tasks.reversal import BWD, FWD, ReversalTask, ReversalTaskConfig, answer_alphabet


def test_bilinear_gradient_matches_autograd():
    torch.manual_seed(0)
    emb = make_embeddings(12, 7, seed=1)
    theta = torch.randn(7, 7, dtype=torch.float64, requires_grad=True)
    x, y = torch.tensor([0, 1, 2, 3, 0]), torch.tensor([6, 7, 8, 9, 11])
    bilinear_loss(theta, emb, x, y).backward()
    assert torch.allclose(bilinear_grad(theta.detach(), emb, x, y), theta.grad, atol=1e-12)


def test_coefficient_descent_equals_descent_on_theta():
    n, d, steps, lr = 6, 5, 20, 0.7
    run = train_bilinear(n, d, steps, lr, seed=3, eval_every=1)
    emb = make_embeddings(2 * n, d, seed=3)
    theta = torch.zeros(d, d, dtype=torch.float64)
    a, b = torch.arange(n), torch.arange(n, 2 * n)
    for t in range(steps + 1):
        fwd = bilinear_loss(theta, emb, a, b).item()
        rev = bilinear_loss(theta, emb, b, a).item()
        assert math.isclose(run.forward_nll[t], fwd, rel_tol=1e-10) and math.isclose(run.reverse_nll[t], rev, rel_tol=1e-10)
        theta = theta - lr * bilinear_grad(theta, emb, a, b)


def test_orthonormal_embeddings_leave_reverse_logits_exactly_at_zero():
    run = train_bilinear(10, 20, 200, 1.0, seed=0, embeddings="orthonormal", eval_every=200)
    assert run.forward_nll[-1] < run.forward_nll[0] - 1
    assert max(abs(r) for r in run.final_reverse_logits) < 1e-9
    assert math.isclose(run.reverse_nll[-1], math.log(20), rel_tol=1e-9)


def test_embeddings_validate():
    with pytest.raises(ValueError, match="d >= number of tokens"):
        make_embeddings(10, 4, 0, "orthonormal")
    assert bilinear_logits(torch.eye(4, dtype=torch.float64), make_embeddings(6, 4, 0), torch.tensor([0])).shape == (1, 6)


def test_reversal_data_matches_the_reference_split():
    d = ReversalTask(ReversalTaskConfig()).data()
    assert d.train.shape == (340, 3) and d.val.shape == (60, 3) and d.d_vocab == 802
    train = {tuple(s) for s in d.train}
    for s in d.val:  # the held-out direction is never trained, the other one is
        assert tuple(s) not in train
        rev = (s[2], BWD if s[1] == FWD else FWD, s[0])
        assert rev in train
    a, b = d.candidates["A"], d.candidates["B"]
    assert len(a) == len(b) == 200 and not set(a) & set(b) and min(a.min(), b.min()) >= 2
    assert d.train_heldout.sum() == 60


def test_variants_and_augmentation():
    chain = ReversalTask(ReversalTaskConfig(variant="chain")).data()
    assert chain.train.shape == (540, 3) and chain.val.shape == (60, 3) and (chain.val[:, 1] == BWD).all()
    trained = {tuple(s) for s in chain.train}
    for (x, _, z), y in zip(chain.val, chain.val_bridge):
        assert (x, FWD, y) in trained and (y, FWD, z) in trained
    icl = ReversalTask(ReversalTaskConfig(variant="in_context")).data()
    assert icl.train.shape == (700, 7) and icl.val.shape == (300, 7)
    assert (icl.train[:, 0] == icl.train[:, 6]).all() and (icl.train[:, 2] == icl.train[:, 4]).all()
    aug = ReversalTask(ReversalTaskConfig(augment_reversed=True)).data()
    base = ReversalTask(ReversalTaskConfig()).data()
    trained = {tuple(s) for s in aug.train}
    assert aug.train.shape == (370, 3) and aug.val.shape == (30, 3) and aug.val_seen.shape == (30, 3)
    assert {tuple(s) for s in aug.val_seen} <= trained  # reversed form trained
    assert not {tuple(s) for s in aug.val} & trained  # judged on: never trained in this direction
    assert {tuple(s) for s in aug.val} | {tuple(s) for s in aug.val_seen} == {tuple(s) for s in base.val}


def test_data_is_a_function_of_the_seed():
    a = ReversalTask(ReversalTaskConfig(), seed=5).data()
    b = ReversalTask(ReversalTaskConfig(), seed=5).data()
    c = ReversalTask(ReversalTaskConfig(), seed=6).data()
    assert np.array_equal(a.train, b.train) and not np.array_equal(a.train, c.train)


def test_config_errors_name_the_field():
    with pytest.raises(ConfigError, match="vocab_size"):
        ReversalTaskConfig(variant="chain", vocab_size=500)
    with pytest.raises(ConfigError, match="augment_reversed"):
        ReversalTaskConfig(variant="chain", augment_reversed=True)


def test_epoch_batches_cover_each_sentence_once_per_epoch():
    task = ReversalTask(ReversalTaskConfig())
    d = task.data()
    fn = task.epoch_batches(d, 64)
    rows = torch.cat([torch.cat([b.tokens, b.targets[:, -1:]], 1) for b in (fn(s) for s in range(6))])  # 340 = 6 batches
    assert sorted(map(tuple, rows.tolist())) == sorted(map(tuple, d.train.tolist()))
    assert torch.equal(fn(3).tokens, fn(3).tokens) and fn(0).positions.tolist() == [1]
    assert task.epoch_batches(d, 64, whole_sequence=True)(0).positions is None


def test_chance_statistics_of_an_uninformed_model():
    d = ReversalTask(ReversalTaskConfig()).data()
    logp = torch.full((len(d.val), d.d_vocab), -math.log(d.d_vocab))  # uniform: knows nothing
    s = summarize_stats(answer_stats(logp, d, d.val))
    groups = exchangeable_groups(d.val)
    n = np.concatenate([np.full(len(rows), len(c)) for rows, c in groups])
    assert math.isclose(s["nll_exch"], float(np.log(n).mean()), rel_tol=1e-6)
    assert math.isclose(s["chance_nll_exch"], s["nll_exch"], rel_tol=1e-6)
    assert math.isclose(s["nll"], math.log(d.d_vocab), rel_tol=1e-6)
    assert math.isclose(s["chance_acc_alphabet"], 1 / 200)
    assert answer_alphabet(d, d.val).shape == (60, 200)


def test_a_model_that_knows_the_answers_scores_perfectly():
    d = ReversalTask(ReversalTaskConfig()).data()
    logp = torch.full((len(d.val), d.d_vocab), -20.0)
    logp[torch.arange(len(d.val)), torch.from_numpy(d.val[:, -1])] = 0.0
    s = summarize_stats(answer_stats(logp, d, d.val))
    assert s["acc_exch"] == 1.0 and s["acc_alphabet"] == 1.0 and s["nll"] < 1e-6


def test_in_context_split_validated_as_built():
    """validate() and the in-context builder count the trained y's the same way."""
    import pytest

    from lmlab.config import ConfigError
    from lmlab.tasks.reversal import ReversalTask, ReversalTaskConfig

    with pytest.raises(ConfigError, match="n_y"):
        ReversalTaskConfig(variant="in_context", n_y=10, split_ratio=0.06)
    for ratio, n_train in ((0.35, 3), (0.7, 7), (0.29, 2)):
        cfg = ReversalTaskConfig(variant="in_context", n_x=4, n_y=10, split_ratio=ratio, vocab_size=20)
        assert cfg.n_train_y == n_train
        data = ReversalTask(cfg, seed=0).data()
        assert len(data.train) == 4 * n_train and len(data.val) == 4 * (10 - n_train)
    assert ReversalTaskConfig(variant="in_context", n_y=100, split_ratio=0.29).n_train_y == 29
