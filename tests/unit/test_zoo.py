import numpy as np
import pytest
import torch

from lmlab.config import ConfigError
from lmlab.zoo import PAD, ZooConfig, ZooVocab, answer_correct, bag_of_tokens, config_hash, model_specs
from lmlab.zoo.families import FAMILIES

SMALL = ZooConfig(questions_per_family=40, sizes=("1x8",), budgets=(3,), mixes=("two-hop", "all"))


@pytest.fixture(scope="module")
def vocab():
    return ZooVocab(SMALL)


def test_vocabulary_ranges_are_disjoint(vocab):
    spans = sorted((vocab.offset[f], vocab.offset[f] + fam.n_tokens) for f, fam in vocab.families.items())
    assert spans[0][0] == 1 + len(SMALL.families)  # after PAD and the prefix tokens
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))
    assert vocab.d_vocab == spans[-1][1]


def test_question_bank(vocab):
    bank = vocab.question_bank()
    n = 40 * len(SMALL.families)
    assert bank["tokens"].shape == (n, vocab.n_ctx) and len(bank["text"]) == n
    for f in SMALL.families:
        rows = np.array([b == f for b in bank["benchmarks"]])
        assert (bank["tokens"][rows, 0] == vocab.prefix[f]).all()
        lo, hi = vocab.offset[f], vocab.offset[f] + vocab.families[f].n_tokens
        assert ((bank["answer"][rows] >= lo) & (bank["answer"][rows] < hi)).all()
        pos = bank["answer_pos"][rows]
        last = bank["tokens"][rows][np.arange(rows.sum()), pos]
        assert ((last >= lo) & (last < hi)).all()  # the answer position holds a real token
        after = bank["tokens"][rows][np.arange(vocab.n_ctx)[None, :] > pos[:, None]]
        assert (after == PAD).all()
    kinds = set(bank["kind"])
    assert {"trained", "held-out reverse"} <= kinds


def test_backcopy_and_markov_answers_follow_the_rule(vocab):
    bb = vocab.families["bigram-backcopy"].questions()
    rows = np.arange(len(bb.answer))
    assert (bb.tokens[rows, bb.answer_pos - 1] == bb.answer).all()  # the character before the trigger
    mk = vocab.families["markov"].questions()
    assert (mk.tokens[rows[: len(mk.answer)], mk.answer_pos - 2] == mk.answer).all()  # x_{n-3}, delta < 0.5


def test_batches_are_pure_and_masked(vocab):
    a, b = vocab.batch("all", 5, 16, seed=1), vocab.batch("all", 5, 16, seed=1)
    assert torch.equal(a.tokens, b.tokens) and not torch.equal(a.tokens, vocab.batch("all", 6, 16, seed=1).tokens)
    assert not a.mask[:, 0].any() and not a.mask[a.tokens == PAD].any()
    r = vocab.batch("reversal", 0, 8, seed=0)
    assert r.tokens.shape[1] == 3  # trailing PAD columns trimmed


@pytest.mark.slow
def test_untrained_model_answers_and_bag(vocab):
    from lmlab.nn import TinyConfig, TinyTransformer

    bank = vocab.question_bank()
    torch.manual_seed(0)
    model = TinyTransformer(TinyConfig(d_vocab=vocab.d_vocab, n_ctx=vocab.n_ctx, n_layers=1, d_model=8, n_heads=1))
    y = answer_correct(model, bank, batch=50)
    assert y.shape == (len(bank["answer"]),) and set(np.unique(y)) <= {0, 1}
    x = bag_of_tokens(bank["tokens"], vocab.d_vocab)
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1, rtol=1e-5)
    assert x[:, PAD].max() == 0


def test_config_errors_and_hash():
    with pytest.raises(ConfigError, match="unknown family 'maze'"):
        ZooConfig(families=("maze",))
    with pytest.raises(ConfigError, match="'two-hop\\+maze' uses 'maze'"):
        ZooConfig(mixes=("two-hop+maze",))
    with pytest.raises(ConfigError, match="LAYERSxD_MODEL"):
        ZooConfig(sizes=("big",))
    assert config_hash(SMALL) != config_hash(SMALL.replace(budgets=(4,)))
    assert config_hash(SMALL) == config_hash(ZooConfig.from_dict(SMALL.to_dict()))
    specs = model_specs(SMALL)
    assert len(specs) == SMALL.n_models == 2 and len({s.name for s in specs}) == 2


def test_a_new_family_is_one_registry_line():
    FAMILIES.register("copy-test", f"{__name__}:CopyFamily")
    try:
        cfg = ZooConfig(families=("markov", "copy-test"), questions_per_family=10, mixes=("copy-test",))
        v = ZooVocab(cfg)
        bank = v.question_bank()
        assert v.offset["copy-test"] == v.offset["markov"] + 2 and bank["benchmarks"].count("copy-test") == 10
        assert v.batch("copy-test", 0, 4, 0).tokens.shape == (4, 4)
    finally:
        del FAMILIES.entries["copy-test"]


from lmlab.zoo.families.base import LocalBatch, QuestionSet, ZooFamily  # noqa: E402


class CopyFamily(ZooFamily):
    """The smallest family: repeat the first of three symbols."""

    name = "copy-test"
    version = "copy-test/1"
    n_tokens = 5
    max_len = 3

    def train_batch(self, n, rng):
        t = rng.integers(0, 5, (n, 4))
        t[:, 3] = t[:, 0]
        return LocalBatch(t[:, :3], t[:, 1:], np.ones((n, 3), bool))

    def questions(self):
        t = np.random.default_rng(0).integers(0, 5, (self.n_questions, 3))
        return QuestionSet(t, np.full(self.n_questions, 2), t[:, 0], ["x"] * self.n_questions, ["copy"] * self.n_questions)
