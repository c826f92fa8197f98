"""Distillation on the real all-MiniLM-L6-v2 (marked `model`): a killed-and-resumed run equals an uninterrupted one."""

from __future__ import annotations

import pytest

from lmlab.cache import data as D

pytestmark = pytest.mark.model


class Stop(Exception):
    pass


def test_distill_resume_equals_uninterrupted(tmp_path):
    torch = pytest.importorskip("torch")
    from lmlab.cache import load_st_embedder
    from lmlab.cache.distill import DistillConfig, distill

    torch.set_num_threads(1)
    pairs = [(p.a, p.b, float(p.label)) for p in D.make_pairs(D.KnowledgeBase(), "train", 64, seed=0)]
    cfg = DistillConfig(steps=4, batch_size=4, ckpt_every=2, loss="sld")
    full = load_st_embedder()
    r_full = distill(full.model, pairs, cfg)

    def die_at_3(row):
        if row["step"] == 3:
            raise Stop

    part = load_st_embedder()
    ck = tmp_path / "ck.pt"
    with pytest.raises(Stop):
        distill(part.model, pairs, cfg, ckpt=ck, log=die_at_3)  # checkpoint at step 2, killed in step 3
    resumed = load_st_embedder()
    r_res = distill(resumed.model, pairs, cfg, ckpt=ck)
    assert r_res["curve"] == pytest.approx(r_full["curve"], rel=1e-5)
    assert (r_res["a"], r_res["b"]) == pytest.approx((r_full["a"], r_full["b"]), rel=1e-5)
    v1, v2 = full.encode(["capital of Peru?"]), resumed.encode(["capital of Peru?"])
    assert float((v1 * v2).sum()) == pytest.approx(1.0, abs=1e-5)
