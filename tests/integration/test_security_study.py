"""The security study's saved stages (stage-<suite>.json): computed, then reused while their declared code and the
config are unchanged, recomputed with one line saying why otherwise; summary.json's stages say which."""

from __future__ import annotations

import json
import logging

import pytest

from lmlab.studies.runner import make_config, resolve_study

pytestmark = pytest.mark.slow


def test_stages_record_computed_then_reused(tmp_path, monkeypatch, caplog):
    from lmlab.lm.testing import tiny_model_dir

    monkeypatch.setenv("LMLAB_CACHE", str(tmp_path / "cache"))
    study = resolve_study("security")
    model = str(tiny_model_dir(tmp_path / "model"))
    cfg = make_config(study, quick=True, overrides=list(study.tiny) + ['suites=["injection","cache-poison"]'],
                      model=model)
    first = study.run(cfg, tmp_path / "run")
    again = study.run(cfg, tmp_path / "run")
    assert set(first.stages) == {"injection", "cache-poison"} == set(again.stages)
    for n in first.stages:
        assert first.stages[n]["computed"] and not again.stages[n]["computed"], n
        assert first.stages[n]["fingerprint"] == again.stages[n]["fingerprint"], n
    assert first.stages["injection"]["fingerprint"] != first.stages["cache-poison"]["fingerprint"]  # own code each
    # a stage file written before its code was fingerprinted is stale
    path = tmp_path / "run" / "stage-injection.json"
    saved = json.loads(path.read_text())
    path.write_text(json.dumps({"key": saved["key"], "result": saved["result"]}))
    with caplog.at_level(logging.WARNING, logger="lmlab.cache"):
        third = study.run(cfg, tmp_path / "run")
    assert third.stages["injection"]["reason"] == "recomputed because no code fingerprint (written by an older lmlab)"
    assert not third.stages["cache-poison"]["computed"]
    assert any("stage-injection.json: recomputed because" in r.getMessage() for r in caplog.records)


def test_stages_keyed_by_the_model_weights(tmp_path, monkeypatch, caplog):
    """Another checkpoint written at the same model path recomputes the stages that query the model (one line
    says the weights changed); the stage that does not use it is reused."""
    from lmlab.lm.testing import tiny_model_dir

    monkeypatch.setenv("LMLAB_CACHE", str(tmp_path / "cache"))
    study = resolve_study("security")
    model = tiny_model_dir(tmp_path / "model", seed=0)
    cfg = make_config(study, quick=True, overrides=list(study.tiny) + ['suites=["injection","cache-poison"]'],
                      model=str(model))
    first = study.run(cfg, tmp_path / "run")
    assert not study.run(cfg, tmp_path / "run").stages["injection"]["computed"]  # same weights: reused
    tiny_model_dir(model, seed=1)
    with caplog.at_level(logging.WARNING, logger="lmlab.cache"):
        other = study.run(cfg, tmp_path / "run")
    assert other.stages["injection"]["computed"]
    assert other.stages["injection"]["reason"] == "recomputed because model weights changed"
    assert other.stages["injection"]["fingerprint"] != first.stages["injection"]["fingerprint"]
    assert not other.stages["cache-poison"]["computed"]
    assert any("stage-injection.json: recomputed because model weights changed" in r.getMessage()
               for r in caplog.records)
