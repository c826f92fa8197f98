"""The extreme-token pipeline on a tiny config: four variants, metrics, claims, figures."""

import json

import pytest
from typer.testing import CliRunner

from lmlab.cli import app
from lmlab.config import ConfigError, Variant, apply_overrides
from lmlab.studies.extreme_tokens import SINK_MIN, ExtremeTokensStudy


def tiny_config():
    s = ExtremeTokensStudy()
    cfg = s.quick_config()
    return cfg.replace(task=cfg.task.replace(seq_len=16), model=cfg.model.replace(d_model=16), batch_size=8,
                       train=cfg.train.replace(eval_every=10, progress=False), eval_size=16,
                       variants=tuple(Variant(v.name, v.overrides + ("train.steps=20",)) for v in cfg.variants))


@pytest.mark.slow
def test_tiny_run_writes_summary_and_figures(tmp_path):
    summary = ExtremeTokensStudy().run(tiny_config(), tmp_path, quick=True)
    data = json.loads((tmp_path / "summary.json").read_text())
    ids = [c["id"] for c in data["claims"]]
    assert ids == ["attention_sink", "active_on_triggers", "value_drain", "attention_sink_3l", "task_solved", "mutual_reinforcement",
                   "relu_removes_sink", "residual_peak", "sgd_weakens_peak"]
    final = data["metrics"]["final"]
    assert set(final) == {"softmax_adam_1l", "relu_adam_1l", "softmax_adam_3l", "softmax_sgd_3l"}
    assert len(final["softmax_adam_3l"]["resid_ratio"]) == 3
    by_id = {c["id"]: c for c in data["claims"]}
    # statuses follow the measured numbers (20 steps cannot build a sink)
    assert (by_id["attention_sink"]["status"] == "pass") == (final["softmax_adam_1l"]["sink_nontrigger"][0] >= SINK_MIN)
    for fig in summary.figures:
        assert (tmp_path / fig).stat().st_size > 1000
    for v in final:
        assert (tmp_path / v / "metrics.jsonl").exists() and (tmp_path / v / "checkpoint.pt").exists()


def test_variants_must_cover_the_comparisons():
    cfg = ExtremeTokensStudy().quick_config()
    with pytest.raises(ConfigError, match="missing"):
        cfg.replace(variants=cfg.variants[:2])


def test_cli_override_of_a_variant_field_is_validated(tmp_path):
    res = CliRunner().invoke(app, ["run", "extreme-tokens", "--quick", "--out", str(tmp_path),
                                   "--set", "task.seq_len=2"])
    assert res.exit_code == 2 and "seq_len must be >= 3" in res.output


def test_config_round_trip_with_variants():
    cfg = ExtremeTokensStudy().quick_config()
    assert type(cfg).from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert apply_overrides(cfg, ["train.eval_every=50"]).train.eval_every == 50


def test_variant_applies_its_overrides_and_a_bad_one_fails_before_training(tmp_path):
    cfg = ExtremeTokensStudy().quick_config()
    sgd = next(v for v in cfg.variants if v.name == "softmax_sgd_3l").apply(cfg)
    assert (sgd.model.n_layers, sgd.train.optimizer, sgd.train.lr, sgd.train.momentum, sgd.train.steps) == \
        (3, "sgd", 0.03, 0.9, 2500)
    bad = cfg.replace(variants=cfg.variants[:3] + (Variant("softmax_sgd_3l", ("train.optimiser=sgd",)),))
    with pytest.raises(ConfigError, match="variant 'softmax_sgd_3l'.*did you mean 'optimizer'"):
        ExtremeTokensStudy().run(bad, tmp_path)
    assert not (tmp_path / "softmax_adam_1l").exists()


def test_device_and_progress_have_one_home():
    from lmlab.config import set_everywhere

    cfg = ExtremeTokensStudy().quick_config()
    assert set_everywhere(cfg, "device", "cuda")[1] == ["train.device"]
    assert set_everywhere(cfg, "progress", False)[1] == ["train.progress"]
