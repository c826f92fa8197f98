"""Provenance: a checkpoint or finished run carries the fingerprint of the code that made it; editing a declared
module recomputes (and says why in one line), editing an undeclared one, or only a comment, reuses."""

from __future__ import annotations

import importlib
import logging
import sys

import pytest

from lmlab.claims import Summary
from lmlab.io import artifact_fingerprint, code_fingerprint, stale_reason
from lmlab.studies.toy import ToyConfig, ToyStudy, toy_batch, toy_model
from lmlab.train import TrainConfig, train


@pytest.fixture
def modules(tmp_path, monkeypatch):
    pkg = tmp_path / "provpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "declared.py").write_text("def f(x):\n    return x + 1\n\n\ndef g(x):\n    return x\n")
    (pkg / "unrelated.py").write_text("def h(x):\n    return x * 2\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    yield pkg
    for m in [m for m in sys.modules if m.startswith("provpkg")]:
        del sys.modules[m]


def _run(out, code=("provpkg.declared",)):
    cfg = ToyConfig(train=TrainConfig(steps=6, lr=0.03, eval_every=3, log_every=3, checkpoint_every=3, progress=False))
    return train(toy_model(cfg), cfg.train.seeded(0), lambda s: toy_batch(cfg, s), out, resume=True, code=code,
                 eval_fn=lambda m, s: {"x": 0.0}, meta={"toy": "provenance"})


def test_editing_a_declared_module_recomputes_and_an_unrelated_one_does_not(modules, tmp_path, caplog):
    out = tmp_path / "run"
    first = _run(out)
    assert first.stage["computed"] and first.stage["reason"] == "computed now"
    assert not _run(out).stage["computed"]  # same code: the finished run is reused

    (modules / "unrelated.py").write_text("def h(x):\n    return x * 3\n")
    assert not _run(out).stage["computed"]  # not declared: still reused
    (modules / "declared.py").write_text("# a comment\ndef f(x):\n    'doc'\n    return x + 1\n\n\ndef g(x):\n"
                                         "    return x\n")
    assert not _run(out).stage["computed"]  # comments and docstrings are not code

    (modules / "declared.py").write_text("def f(x):\n    return x + 2\n\n\ndef g(x):\n    return x\n")
    with caplog.at_level(logging.WARNING, logger="lmlab.train"):
        again = _run(out)
    assert again.stage["computed"] and again.stage["reason"] == "recomputed because provpkg.declared changed"
    assert [r.getMessage() for r in caplog.records if "recomputed" in r.getMessage()] == [
        f"{out}: recomputed because provpkg.declared changed"]
    assert again.resumed_from is None and again.final_step == 6


def test_one_function_can_be_declared(modules):
    before = code_fingerprint(["provpkg.declared:g"])
    (modules / "declared.py").write_text("def f(x):\n    return x + 5\n\n\ndef g(x):\n    return x\n")
    assert code_fingerprint(["provpkg.declared:g"]) == before  # f changed, g did not
    with pytest.raises(ValueError, match="no top-level 'nope'"):
        code_fingerprint(["provpkg.declared:nope"])


def test_a_checkpoint_without_fingerprint_is_stale():
    new = artifact_fingerprint(["lmlab.io"], config={"a": 1})
    assert stale_reason(None, new) == "no code fingerprint (written by an older lmlab)"
    assert stale_reason(new, artifact_fingerprint(["lmlab.io"], config={"a": 1}, data=[1])) == "input data changed"


def test_summary_records_each_stage(tmp_path):
    study = ToyStudy()
    cfg = ToyConfig(train=TrainConfig(steps=4, lr=0.03, eval_every=2, log_every=2, checkpoint_every=2, progress=False))
    first = study.run(cfg, tmp_path / "toy")
    again = study.run(cfg, tmp_path / "toy")
    assert first.stages["train"]["computed"] and not again.stages["train"]["computed"]
    assert first.stages["train"]["fingerprint"] == again.stages["train"]["fingerprint"]


def test_provenance_is_taken_when_the_run_starts(tmp_path, monkeypatch):
    """A commit made while a run works must not be named as the code that ran: git_commit / git_dirty are read
    before the study starts; what differs at the end is kept apart in git_at_end."""
    import lmlab.config

    real = lmlab.config.provenance
    calls = []

    def fake():
        calls.append(1)
        p = real()
        return {**p, "git_commit": "start" if len(calls) == 1 else "made-during-the-run", "git_dirty": False}

    monkeypatch.setattr(lmlab.config, "provenance", fake)
    cfg = ToyConfig(train=TrainConfig(steps=2, lr=0.03, eval_every=2, log_every=2, checkpoint_every=2, progress=False))
    s = ToyStudy().run(cfg, tmp_path / "toy")
    assert s.provenance["git_commit"] == "start" and s.provenance["git_dirty"] is False
    assert s.provenance["git_at_end"] == {"git_commit": "made-during-the-run"}
    assert {"lmlab", "python", "torch", "platform", "torch_threads"} <= set(s.provenance)
    assert Summary.read(tmp_path / "toy").provenance["git_commit"] == "start"
    calls.clear()
    monkeypatch.setattr(lmlab.config, "provenance", lambda: {**real(), "git_commit": "same", "git_dirty": False})
    assert "git_at_end" not in ToyStudy().run(cfg, tmp_path / "toy2").provenance  # nothing moved: nothing added


def test_model_stage_reads_the_load_info_of_a_gguf_model():
    from types import SimpleNamespace

    from lmlab.studies.base import model_stage

    reused = model_stage(SimpleNamespace(load_info={"source": "cache", "cache_fingerprint": "ab12"}))
    assert reused == {"computed": False, "fingerprint": "ab12",
                      "reason": "reused: the de-quantized cache with the same fingerprint"}
    rebuilt = model_stage(SimpleNamespace(load_info={"source": "gguf", "cache_fingerprint": "cd34",
                                                     "rebuilt_because": "config changed"}))
    assert rebuilt["computed"] and rebuilt["reason"] == "de-quantized now: the cache was rebuilt because config changed"
    assert model_stage(SimpleNamespace()) is None  # not a GGUF model: no such stage
