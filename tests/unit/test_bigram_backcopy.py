import numpy as np
import pytest
import torch

from lmlab.analysis.extreme_tokens import head_outputs, norm_ratio, sink_share, token_norms
from lmlab.config import ConfigError
from lmlab.tasks.bigram_backcopy import BigramBackcopyConfig, BigramBackcopyTask


@pytest.fixture(scope="module")
def task():
    return BigramBackcopyTask(BigramBackcopyConfig(seq_len=64), seed=1)


def test_backcopy_rule_holds_on_every_trigger(task):
    x = task.sample(200, np.random.default_rng(0))
    assert x.shape == (200, 64) and (x[:, 0] == task.bos).all()
    trig = task.is_trigger[x[:, 1:-1]]
    assert trig.sum() > 1000
    assert (x[:, 2:][trig] == x[:, :-2][trig]).all()
    assert not task.is_trigger[x[:, 1]].any()  # x_1 is drawn with triggers zeroed out
    assert (x != task.delim).all() and (x[:, 1:] != task.bos).all()


def test_check_backcopy_detects_violations(task):
    x = task.sample(4, np.random.default_rng(0))
    t = np.argwhere(task.is_trigger[x[:, 1:-1]])[0]
    x[t[0], t[1] + 2] = (x[t[0], t[1]] + 1) % 64
    assert not task.check_backcopy(x)


def test_non_trigger_transitions_follow_the_bigram_table(task):
    x = task.sample(3000, np.random.default_rng(2))
    cur, nxt = x[:, 1:-1], x[:, 2:]
    a = int(np.argmax(np.bincount(cur[~task.is_trigger[cur]])))  # most frequent non-trigger char
    sel = (cur == a)
    freq = np.bincount(nxt[sel], minlength=task.d_vocab)[: len(task.vocab)] / sel.sum()
    np.testing.assert_allclose(freq, task.p_bigram[a], atol=0.02)


def test_triggers_are_most_frequent_chars(task):
    assert [task.vocab[i] for i in task.triggers] == [" ", "e", "t"]
    assert task.d_vocab == len(task.vocab) + 2 and task.bos == len(task.vocab)


def test_seeded_and_synthetic_source():
    t = BigramBackcopyTask(BigramBackcopyConfig(seq_len=16, source="synthetic", synthetic_vocab=10), seed=3)
    assert (t.batch(5, 4).tokens == t.batch(5, 4).tokens).all()
    assert t.check_backcopy(t.sample(50, np.random.default_rng(0)))
    with pytest.raises(ConfigError, match="seq_len must be >= 3"):
        BigramBackcopyConfig(seq_len=2)


def test_oracle_ce_is_entropy_of_the_table(task):
    x = task.sample(500, np.random.default_rng(3))
    assert 1.0 < task.oracle_bigram_ce(x) < 3.5


# --- metrics on hand-built tensors ------------------------------------------------------------
def test_sink_share_with_query_masks():
    p = torch.zeros(1, 1, 4, 4)
    p[0, 0, :, 0] = 1.0  # all queries on BOS...
    p[0, 0, 2] = torch.tensor([0.0, 1.0, 0.0, 0.0])  # ...except query 2, which attends to position 1
    trig = torch.tensor([[False, False, True, False]])
    assert sink_share(p, ~trig).item() == pytest.approx(1.0)  # non-trigger queries 1 and 3 (0 is skipped)
    assert sink_share(p, trig).item() == pytest.approx(0.0)
    assert sink_share(p, skip_sink_query=False).item() == pytest.approx(0.75)


def test_norm_ratio_drain_and_peak():
    v = torch.ones(2, 5, 1, 4)
    v[:, 0] *= 0.1
    assert norm_ratio(v).item() == pytest.approx(0.1)
    r = torch.ones(2, 5, 8)
    r[:, 0] *= 30
    r[:, 3] *= 2  # the median ignores one outlier among the others
    assert norm_ratio(r).item() == pytest.approx(30.0)
    assert token_norms(r).shape == (2, 5)


def test_head_outputs_matches_attention_output_projection():
    torch.manual_seed(0)
    v = torch.randn(2, 3, 2, 4)
    W_O = torch.randn(8, 5)
    out = head_outputs(v, W_O)
    torch.testing.assert_close(out.sum(2), v.reshape(2, 3, 8) @ W_O)
