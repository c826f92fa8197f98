"""TrainConfig.seed: None means "the owner fills it in"; an explicit seed is never overwritten."""

import json

import torch

from lmlab.config import apply_overrides
from lmlab.nn import TinyConfig, TinyTransformer
from lmlab.studies.two_hop import TwoHopStudy
from lmlab.tasks.two_hop import TwoHopTask, TwoHopTaskConfig
from lmlab.train import TrainConfig, load_checkpoint, train


def test_seeded_fills_only_an_unset_seed():
    assert TrainConfig().seed is None
    assert TrainConfig().seeded(3).seed == 3
    assert TrainConfig(seed=5).seeded(3).seed == 5
    cfg = apply_overrides(TwoHopStudy().quick_config(), ["train.seed=5"])  # --set train.seed=5
    assert cfg.train.seeded(cfg.seed).seed == 5 and cfg.seed == 42


def _run(tmp_path, seed):
    task = TwoHopTask(TwoHopTaskConfig(n_chains=2, n_entities=8), seed=3)
    torch.manual_seed(3)
    model = TinyTransformer(TinyConfig(d_vocab=task.d_vocab, n_ctx=task.n_ctx, n_layers=1, d_model=16))
    cfg = TrainConfig(steps=6, eval_every=3, log_every=3, seed=seed, progress=False)
    train(model, cfg, lambda step: task.batch(step, 8), tmp_path, eval_fn=lambda m, s: {})
    return (tmp_path / "metrics.jsonl").read_text(), load_checkpoint(tmp_path / "checkpoint.pt")["meta"]


def test_direct_callers_get_seed_0(tmp_path):
    log_none, meta_none = _run(tmp_path / "none", None)
    log_zero, meta_zero = _run(tmp_path / "zero", 0)
    assert log_none == log_zero and meta_none == meta_zero and meta_none["train"]["seed"] == 0
    assert json.loads(log_none.splitlines()[-1])["kind"] == "eval"
