"""tpo and meta-rewarding: summary.json's stages say which iterations were computed now and which were reused
from a finished iteration directory with the same fingerprint; under another config the arm starts over."""

from __future__ import annotations

import pytest

from lmlab.studies.runner import make_config, resolve_study

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("name,stages", [("tpo", {"thought-generic:iter1", "direct:iter1"}), ("meta-rewarding", {"iter1"})])
def test_iteration_stages_computed_then_reused(name, stages, tmp_path, monkeypatch, one_thread, caplog):
    from lmlab.lm.testing import tiny_model_dir

    monkeypatch.setenv("LMLAB_CACHE", str(tmp_path / "cache"))
    study = resolve_study(name)
    cfg = make_config(study, quick=True, overrides=list(study.tiny), model=str(tiny_model_dir(tmp_path / "model")))
    first = study.run(cfg, tmp_path / "run", quick=True)
    again = study.run(cfg, tmp_path / "run", quick=True)
    assert set(first.stages) == stages == set(again.stages)
    for stage in stages:
        assert first.stages[stage]["computed"] and first.stages[stage]["reason"] == "computed now"
        assert not again.stages[stage]["computed"] and first.stages[stage]["fingerprint"] == again.stages[stage]["fingerprint"]
        assert again.stages[stage]["reason"] == "reused: the finished iteration with the same fingerprint"
    # another config: the arm's earlier directory is moved aside, nothing in it is reused
    other = study.run(cfg.replace(eval_max_new_tokens=6), tmp_path / "run", quick=True)
    for stage in stages:
        assert other.stages[stage]["computed"] and other.stages[stage]["fingerprint"] != first.stages[stage]["fingerprint"]
    assert any(p.name.split(".stale-")[0] in {s.split(":")[0] for s in stages} | {"meta-rewarding"}
               for p in (tmp_path / "run").glob("*.stale-*"))
    # the same config, another checkpoint at the same model path: recomputed, and the line says why
    import logging

    tiny_model_dir(tmp_path / "model", seed=1)
    with caplog.at_level(logging.WARNING, logger="lmlab.cache"):
        reloaded = study.run(cfg.replace(eval_max_new_tokens=6), tmp_path / "run", quick=True)
    for stage in stages:
        assert reloaded.stages[stage]["computed"] and reloaded.stages[stage]["fingerprint"] != other.stages[stage]["fingerprint"]
    assert any("recomputed because model weights changed" in r.getMessage() for r in caplog.records)
