"""Distillation losses (gradients on a hand case), AUC against sklearn, hard-pair data, calibration."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lmlab.cache import data as D
from lmlab.cache.distill import DistillConfig, auc, bce_loss, sld_loss, student_q
from lmlab.cache.simulate import at_budget, exact_match, simulate, static_hit_rates, threshold_for_target_error
from lmlab.config import ConfigError


def _leaf(x: float) -> torch.Tensor:
    return torch.tensor(x, requires_grad=True)


@pytest.mark.parametrize("p", [0.0, 1.0, 0.3])
def test_bce_gradients_hand_case(p):
    cos, a, b = _leaf(0.6), _leaf(10.0), _leaf(-7.0)
    loss = bce_loss(cos, torch.tensor(p), a, b)
    loss.backward()
    q = 1 / (1 + math.exp(-(10 * 0.6 - 7)))  # sigmoid(-1)
    assert loss.item() == pytest.approx(-(p * math.log(q) + (1 - p) * math.log(1 - q)), rel=1e-5)
    # d/dlogit BCE = q - p; logit = a cos + b
    assert cos.grad.item() == pytest.approx(10 * (q - p), rel=1e-5)
    assert a.grad.item() == pytest.approx(0.6 * (q - p), rel=1e-5)
    assert b.grad.item() == pytest.approx(q - p, rel=1e-5)


@pytest.mark.parametrize("p", [0.0, 1.0, 0.3])
def test_sld_gradients_hand_case(p):
    eps = 0.05
    cos, a, b = _leaf(0.6), _leaf(10.0), _leaf(-7.0)
    loss = sld_loss(cos, torch.tensor(p), a, b, eps=eps)
    loss.backward()
    q = 1 / (1 + math.exp(1.0))
    pc = min(max(p, eps), 1 - eps)
    d = math.log(q) - math.log(pc)
    assert loss.item() == pytest.approx(d * d, rel=1e-5)
    # d/dlogit (log q - log p)^2 = 2 (log q - log p) (1 - q)
    g = 2 * d * (1 - q)
    assert cos.grad.item() == pytest.approx(10 * g, rel=1e-5)
    assert a.grad.item() == pytest.approx(0.6 * g, rel=1e-5)
    assert b.grad.item() == pytest.approx(g, rel=1e-5)
    assert student_q(torch.tensor(0.6), 10.0, -7.0).item() == pytest.approx(q)


def test_distill_config_validates():
    with pytest.raises(ConfigError, match="eps"):
        DistillConfig(eps=0.0)
    with pytest.raises(ConfigError, match="loss"):
        DistillConfig(loss="mse")


@pytest.mark.slow  # importing sklearn takes seconds on a busy machine
def test_auc_matches_sklearn():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    for _ in range(5):
        y = rng.integers(0, 2, 300)
        s = np.round(rng.normal(size=300) + 0.7 * y, 1)  # rounded: many ties
        assert auc(s, y) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert math.isnan(auc([0.1, 0.2], [1, 1]))


def test_pairs_labels_and_disjoint_splits():
    kb = D.KnowledgeBase()
    train = D.make_pairs(kb, "train", 3000, seed=0)
    test = D.make_pairs(kb, "test", 2000, seed=0)
    assert D.make_pairs(kb, "test", 50, seed=0) == test[:50]  # deterministic
    for pairs in (train, test):
        assert all((p.label == 1) == (p.key_a == p.key_b) for p in pairs)
        assert {p.kind for p in pairs} == set(D.PAIR_KINDS)
        assert 0.3 < np.mean([p.label for p in pairs]) < 0.5
    ents = lambda ps: {p.key_a[1] for p in ps} | {p.key_b[1] for p in ps}  # noqa: E731
    assert not ents(train) & ents(test)
    for fam in D.FAMILIES:
        assert not set(D.templates(fam, "train")) & set(D.templates(fam, "test"))
    texts_train = {t for p in train for t in (p.a, p.b)}
    assert not texts_train & {t for p in test for t in (p.a, p.b)}


def test_stream_mix_and_calibration():
    kb = D.KnowledgeBase()
    mix = {"fresh": 0.2, "repeat": 0.2, "paraphrase": 0.3, "near_miss": 0.3}
    s = D.make_stream(kb, 600, mix, seed=0, part=1)
    counts = {k: sum(q.kind == k for q in s) for k in mix}
    assert all(abs(counts[k] / 600 - mix[k]) < 0.06 for k in mix)
    calib_ents = {q.key[1] for q in D.make_stream(kb, 300, mix, seed=0, part=0)}
    assert not calib_ents & {q.key[1] for q in s}
    with pytest.raises(ValueError, match="unknown kind"):
        D.make_stream(kb, 10, {"typo": 1.0})
    rows = [{"tau": t, "wrong_hit_rate": w, "correct_hit_rate": c} for t, w, c in
            ((0.5, 0.2, 0.6), (0.7, 0.03, 0.5), (0.8, 0.01, 0.45), (0.9, 0.0, 0.4), (1.0, 0.0, 0.3))]
    assert threshold_for_target_error(rows, 0.05) == 0.7
    assert threshold_for_target_error(rows, 0.0) == 0.9
    assert at_budget(rows, 0.01)["tau"] == 0.8 and at_budget(rows, -1) is None


def test_simulation_edge_cases():
    rng = np.random.default_rng(0)
    v = rng.normal(size=(50, 8)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    texts = [f"t{i % 30}" for i in range(50)]
    v = v[[i % 30 for i in range(50)]]
    keys = [i % 30 for i in range(50)]
    rows = simulate(v, keys, [1.0, -1.0], texts)
    assert rows[0]["hits"] == exact_match(texts, keys)["hits"] == 20 and rows[0]["wrong_hits"] == 0
    assert rows[1]["hits"] == 49  # everything after the first query hits at tau = -1
    hr = static_hit_rates(v, np.linspace(-1, 1, 21), texts)
    assert all(a >= b for a, b in zip(hr, hr[1:]))


@pytest.mark.parametrize("name", ["lmlab.cache.data", "lmlab.cache.store", "lmlab.cache.simulate"])
def test_cache_docstring_examples(name):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


class _TinyEncoder(torch.nn.Module):
    """The slice of the sentence-transformers interface that ``distill`` uses: ``tokenize`` and a forward that
    returns ``sentence_embedding`` (bag of hashed characters through a linear layer)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.emb = torch.nn.EmbeddingBag(64, 8, mode="mean")
        self.drop = torch.nn.Dropout(0.1)
        self.max_seq_length = 0

    def tokenize(self, texts):
        ids = [[ord(c) % 64 for c in t[:32]] or [0] for t in texts]
        offsets = torch.tensor([0] + [len(x) for x in ids[:-1]]).cumsum(0)
        return {"ids": torch.tensor([i for x in ids for i in x]), "offsets": offsets}

    def forward(self, f):
        return {"sentence_embedding": self.drop(self.emb(f["ids"], f["offsets"]))}


class _Stop(Exception):
    pass


def test_distill_checkpoint_resumes_and_refuses_code(tmp_path):
    """The checkpoint is read with weights_only: a killed run resumes to the uninterrupted result, and a file
    holding a callable is refused with one line instead of being run."""
    import os

    from lmlab.cache.distill import distill
    from lmlab.train.checkpoint import CheckpointError

    pairs = [(f"what is {i}?", f"tell me {i % 7}", float(i % 7 == i % 5)) for i in range(40)]
    cfg = DistillConfig(steps=6, batch_size=4, ckpt_every=2, warmup=1)
    full = distill(_TinyEncoder(), pairs, cfg)

    def die_at_5(row):
        if row["step"] == 5:
            raise _Stop

    ck = tmp_path / "ck.pt"
    with pytest.raises(_Stop):
        distill(_TinyEncoder(), pairs, cfg, ckpt=ck, log=die_at_5)  # checkpoint at step 4, killed in step 5
    resumed = distill(_TinyEncoder(), pairs, cfg, ckpt=ck)
    assert resumed["stage"]["reason"] == "resumed from step 4 (same fingerprint)"
    assert resumed["curve"] == pytest.approx(full["curve"], rel=1e-5)
    assert distill(_TinyEncoder(), pairs, cfg, ckpt=ck)["stage"]["computed"] is False

    class Payload:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "ran"),))

    torch.save({"fingerprint": "x", "model": Payload()}, ck)
    with pytest.raises(CheckpointError) as e:
        distill(_TinyEncoder(), pairs, cfg, ckpt=ck)
    msg = str(e.value)
    assert "\n" not in msg and "refused without running" in msg and "system" in msg and "delete it" in msg
    assert not (tmp_path / "ran").exists()
