"""tpo and meta-rewarding: summary.json's stages say which iterations were computed now and which were reused
from a finished iteration directory (whose done.json carries no fingerprint yet: the record says so)."""

from __future__ import annotations

import pytest

from lmlab.studies.runner import make_config, resolve_study

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("name,stages", [("tpo", {"thought-generic:iter1", "direct:iter1"}), ("meta-rewarding", {"iter1"})])
def test_iteration_stages_computed_then_reused(name, stages, tmp_path, monkeypatch, one_thread):
    from lmlab.lm.testing import tiny_model_dir

    monkeypatch.setenv("LMLAB_CACHE", str(tmp_path / "cache"))
    study = resolve_study(name)
    cfg = make_config(study, quick=True, overrides=list(study.tiny), model=str(tiny_model_dir(tmp_path / "model")))
    first = study.run(cfg, tmp_path / "run", quick=True)
    again = study.run(cfg, tmp_path / "run", quick=True)
    assert set(first.stages) == stages == set(again.stages)
    for stage in stages:
        assert first.stages[stage]["computed"] and first.stages[stage]["reason"] == "computed now"
        assert not again.stages[stage]["computed"] and "not fingerprinted" in again.stages[stage]["reason"]
