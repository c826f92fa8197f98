"""The prompt-cache study end to end at a tiny size on the real MiniLM (marked `model`, about a minute)."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.model


def test_prompt_cache_study_tiny(tmp_path):
    from lmlab.config import apply_overrides
    from lmlab.studies import STUDIES

    s = STUDIES.get("prompt-cache")()
    cfg = apply_overrides(s.quick_config(), ["distill.steps=2", "n_train_pairs=100", "n_test_pairs=100",
                                             "stream_len=100", "calib_len=80", "gptcache_grid=2", "progress=false",
                                             "save_models=false"])
    summary = s.run(cfg, tmp_path, quick=True)
    d = json.loads((tmp_path / "summary.json").read_text())
    ids = {c["id"] for c in d["claims"]}
    assert {"untuned_auc_near_chance", "tuned_auc_bce", "tuned_auc_sld", "tuned_beats_untuned_at_budget",
            "tau1_exact_only", "threshold_monotone", "gptcache_same_decisions"} <= ids
    by = {c.id: c for c in summary.claims}
    assert by["tau1_exact_only"].passed and by["threshold_monotone"].passed and by["gptcache_same_decisions"].passed
    assert (tmp_path / "prompt-cache.png").exists() and (tmp_path / "distill-bce.pt").exists()
    ctl = s.control_config(cfg)
    assert ctl.distill.shuffle_labels


def test_distill_stages_computed_then_reused(tmp_path, caplog):
    """summary.json's stages: each distilled model computed, then reused from its finished checkpoint (same
    fingerprint); a checkpoint written without the code's fingerprint is stale, retrained, and said so."""
    import logging

    import torch

    from lmlab.config import apply_overrides
    from lmlab.studies import STUDIES

    s = STUDIES.get("prompt-cache")()
    cfg = apply_overrides(s.quick_config(), ["distill.steps=2", "n_train_pairs=50", "n_test_pairs=50", "stream_len=50",
                                             "calib_len=50", "gptcache=false", "progress=false", "save_models=false",
                                             'losses=["bce"]'])
    first = s.run(cfg, tmp_path, quick=True)
    again = s.run(cfg, tmp_path, quick=True)
    a, b = first.stages["distill-bce"], again.stages["distill-bce"]
    assert a["computed"] and not b["computed"] and a["fingerprint"] == b["fingerprint"]
    state = torch.load(tmp_path / "distill-bce.pt", weights_only=True)
    state.pop("fingerprint_parts")  # as written before the code was part of the fingerprint
    torch.save(state, tmp_path / "distill-bce.pt")
    with caplog.at_level(logging.WARNING, logger="lmlab.cache"):
        third = s.run(cfg, tmp_path, quick=True).stages["distill-bce"]
    assert third["computed"] and third["reason"] == "recomputed because no code fingerprint (written by an older lmlab)"
    assert any("distill-bce.pt: recomputed because" in r.getMessage() for r in caplog.records)
