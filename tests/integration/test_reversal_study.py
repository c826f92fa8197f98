"""The reversal-curse pipeline on a tiny config: bilinear model, every transformer variant, claims, figures."""

import json

import pytest

from lmlab.studies.reversal_curse import FORWARD_ACC_MIN, ReversalCurseStudy


def tiny_config():
    cfg = ReversalCurseStudy().quick_config()
    return cfg.replace(
        n_seeds=2,
        bilinear=cfg.bilinear.replace(n_pairs=10, d=32, steps=60, eval_every=20, d_sweep=(16, 32, 64)),
        task=cfg.task.replace(vocab_size=40, alphabet_size=10, n_x=10, n_y=10),
        model=cfg.model.replace(d_model=16, n_heads=2),
        train=cfg.train.replace(steps=30, warmup_steps=5, eval_every=10, progress=False),
        batch_size=16,
    )


@pytest.mark.slow
def test_tiny_run_writes_summary_and_figures(tmp_path):
    summary = ReversalCurseStudy().run(tiny_config(), tmp_path, quick=True)
    data = json.loads((tmp_path / "summary.json").read_text())
    ids = [c["id"] for c in data["claims"]]
    assert ids == ["bilinear_forward", "bilinear_reverse_at_chance", "bilinear_asymmetry", "bilinear_theory_matches",
                   "forward_learned", "reverse_acc_at_chance", "reverse_nll_at_chance", "reverse_nll_not_below_chance",
                   "gap_grows", "curse_across_architectures", "mitigation_reverse_training", "chain_needs_cot",
                   "in_context_control"]
    by_id = {c["id"]: c for c in data["claims"]}
    # 30 steps learn nothing: the forward claim must fail, and its status follows the number
    assert by_id["forward_learned"]["status"] == ("pass" if by_id["forward_learned"]["measured"]["forward_acc"] >= FORWARD_ACC_MIN else "fail")
    assert by_id["forward_learned"]["status"] == "fail"
    assert data["metrics"]["main_pooled_over_seeds"]["n"] == 2 * 3  # two seeds x 3 held-out pairs
    assert (tmp_path / "1l_learned_seed1235" / "metrics.jsonl").exists()
    for fig in summary.figures:
        assert (tmp_path / fig).stat().st_size > 1000
    # a second run resumes every finished sub-run and gives the same claims
    again = ReversalCurseStudy().run(tiny_config(), tmp_path, quick=True, resume=True)
    assert [c.measured for c in again.claims] == [c.measured for c in summary.claims]


def test_variants_are_overrides_of_the_study_config():
    cfg = ReversalCurseStudy().quick_config()
    applied = {v.name: v.apply(cfg) for v in cfg.variants}
    assert applied["1l_learned"] == cfg
    assert applied["1l_rotary"].model.pos_embed == "rotary" and applied["2l_learned"].model.n_layers == 2
    ic = applied["in_context_1l"]
    assert ic.task.variant == "in_context" and ic.whole_sequence and not cfg.whole_sequence
