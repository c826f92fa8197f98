"""Invariant: a run killed mid-way and resumed ends exactly like an uninterrupted run with the same seed."""

import json

import pytest
import torch

from lmlab.nn import TinyConfig, TinyTransformer
from lmlab.tasks.two_hop import TwoHopTask, TwoHopTaskConfig
from lmlab.train import CheckpointError, TrainConfig, read_metrics, train


class Killed(Exception):
    pass


def setup(kill_at=None, optimizer="adamw"):
    task = TwoHopTask(TwoHopTaskConfig(n_chains=2, n_entities=8), seed=3)
    torch.manual_seed(3)
    model = TinyTransformer(TinyConfig(d_vocab=task.d_vocab, n_ctx=task.n_ctx, n_layers=2, d_model=16, n_heads=2))
    cfg = TrainConfig(steps=24, lr=3e-3, eval_every=5, log_every=3, checkpoint_every=6, seed=3, progress=False,
                      warmup_steps=4, schedule="cosine", optimizer=optimizer, momentum=0.9)

    def batch_fn(step):
        if kill_at is not None and step == kill_at:
            raise Killed()
        return task.batch(step, 16)

    def eval_fn(m, step):
        b = task.batch(10_000, 32)
        return {"loss": torch.nn.functional.cross_entropy(m(b.tokens)[b.mask], b.targets[b.mask]).item()}

    return model, cfg, batch_fn, eval_fn


@pytest.mark.slow
@pytest.mark.parametrize("optimizer", ["adamw", "sgd"])
def test_killed_and_resumed_run_equals_uninterrupted(tmp_path, optimizer):
    full_model, cfg, batch_fn, eval_fn = setup(optimizer=optimizer)
    full = train(full_model, cfg, batch_fn, tmp_path / "full", eval_fn=eval_fn)
    full_rows = read_metrics(tmp_path / "full")

    model, cfg, batch_fn, eval_fn = setup(kill_at=15, optimizer=optimizer)  # killed between checkpoints 12 and 18
    with pytest.raises(Killed):
        train(model, cfg, batch_fn, tmp_path / "resumed", eval_fn=eval_fn)
    model2, cfg, batch_fn, eval_fn = setup(optimizer=optimizer)
    torch.manual_seed(999)  # the resumed process starts from a different RNG state; the checkpoint restores it
    res = train(model2, cfg, batch_fn, tmp_path / "resumed", eval_fn=eval_fn, resume=True)

    assert res.resumed_from == 12
    assert read_metrics(tmp_path / "resumed") == full_rows
    assert res.evals == full.evals
    for (n, p), q in zip(full_model.state_dict().items(), model2.state_dict().values()):
        assert torch.equal(p, q), n


def test_resume_of_finished_run_returns_its_history(tmp_path):
    model, cfg, batch_fn, eval_fn = setup()
    first = train(model, cfg, batch_fn, tmp_path, eval_fn=eval_fn)
    again = train(model, cfg, lambda s: (_ for _ in ()).throw(AssertionError("no training expected")), tmp_path,
                  eval_fn=eval_fn, resume=True)
    assert again.evals == first.evals and again.final_step == 24


def test_resume_with_different_config_is_refused(tmp_path):
    model, cfg, batch_fn, eval_fn = setup(kill_at=8)
    with pytest.raises(Killed):
        train(model, cfg, batch_fn, tmp_path, eval_fn=eval_fn)
    model, cfg, batch_fn, eval_fn = setup()
    with pytest.raises(CheckpointError, match="different config"):
        train(model, cfg.replace(lr=1e-2), batch_fn, tmp_path, eval_fn=eval_fn, resume=True)


def test_corrupt_checkpoint_gives_clear_error(tmp_path):
    model, cfg, batch_fn, eval_fn = setup(kill_at=8)
    with pytest.raises(Killed):
        train(model, cfg, batch_fn, tmp_path, eval_fn=eval_fn)
    ckpt = tmp_path / "checkpoint.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:100])
    model, cfg, batch_fn, eval_fn = setup()
    with pytest.raises(CheckpointError, match="corrupt or truncated.*delete it"):
        train(model, cfg, batch_fn, tmp_path, eval_fn=eval_fn, resume=True)


def test_metrics_log_rows(tmp_path):
    model, cfg, batch_fn, eval_fn = setup()
    train(model, cfg, batch_fn, tmp_path, eval_fn=eval_fn)
    rows = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if r["kind"] == "eval"] == [0, 5, 10, 15, 20, 24]
    assert [r["step"] for r in rows if r["kind"] == "train"] == list(range(3, 25, 3))
    train_rows = [r for r in rows if r["kind"] == "train"]
    assert train_rows[-1]["loss"] < train_rows[0]["loss"]  # it learns something


def test_resume_ignores_the_progress_bar_setting(tmp_path):
    model, cfg, batch_fn, eval_fn = setup()
    first = train(model, cfg, batch_fn, tmp_path, eval_fn=eval_fn)
    model, cfg, batch_fn, eval_fn = setup()
    again = train(model, cfg.replace(progress=True), batch_fn, tmp_path, eval_fn=eval_fn, resume=True)
    assert again.evals == first.evals


def test_metrics_log_tolerates_a_torn_last_line(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"kind": "train", "step": 1}\n{"kind": "tr')
    assert read_metrics(tmp_path) == [{"kind": "train", "step": 1}]
    (tmp_path / "metrics.jsonl").write_text('{"kind": "tr\n{"kind": "train", "step": 1}\n')
    with pytest.raises(ValueError, match="line 1 is not valid JSON"):
        read_metrics(tmp_path)
