"""The ideal study end to end at a micro size: summary, claims, figures, control, resume."""

from __future__ import annotations

import json

import pytest

from lmlab.studies import STUDIES

MICRO = dict(ideal_steps=4, psf_ideal_steps=4, e2e_steps=4, decoder_steps=4, decoder_hidden=4, decoder_layers=2,
             n_train=300, n_test=100, n_sweep=300, n_boot=10, ideal_batch=64, patch=8, period=2, replicates=2,
             models=("full_gaussian",), photon_sweep=(10.0, 100.0), sweep_encoders=("psf:delta", "cfa:bayer"),
             pixelcnn_designs=(), progress=False)


@pytest.mark.slow
def test_ideal_study_micro(tmp_path):
    study = STUDIES.get("ideal")()
    cfg = study.quick_config().replace(**MICRO)
    s = study.run(cfg, tmp_path / "run", quick=True)
    ids = {c.id for c in s.claims}
    assert {"mi_increases_with_photons", "information_ranks_designs", "ideal_matches_end_to_end",
            "ideal_beats_random_cfa", "ideal_beats_random_psf"} <= ids
    for f in s.figures:
        assert (tmp_path / "run" / f).stat().st_size > 0
    d = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert set(d["metrics"]["designs"]) == {"bayer", "random", "random_onehot", "mono", "single", "ideal", "e2e"}
    # a second run resumes from the stored state and checkpoints: same numbers
    s2 = study.run(cfg, tmp_path / "run", quick=True)
    assert s2.metrics["designs"] == s.metrics["designs"]
    # summary.json's stages: computed on the first run, reused with the same fingerprint on the second
    assert {"ideal-cfa", "e2e", "ideal-psf", "designs", "psf", "sweep"} <= set(s.stages) and set(s.stages) == set(s2.stages)
    for n, st in s.stages.items():
        assert st["computed"] and not s2.stages[n]["computed"] and s2.stages[n]["fingerprint"] == st["fingerprint"], n
    # control: learning switched off, IDEAL cannot beat its random start
    c = study.run(cfg, tmp_path / "control", quick=True, control=True)
    by_id = {x.id: x for x in c.claims}
    assert by_id["ideal_beats_random_cfa"].status == "fail"
    assert by_id["ideal_beats_random_psf"].status == "fail"
