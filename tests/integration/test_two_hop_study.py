"""The whole two-hop pipeline on a tiny config: train, analyse, figures, summary.json, report, CLI."""

import json

import pytest
from typer.testing import CliRunner

from lmlab.cli import app
from lmlab.config import apply_overrides
from lmlab.report import build_report
from lmlab.studies.two_hop import SOLVED_ACC, TwoHopStudy

TINY = ["task.n_chains=2", "task.n_entities=6", "model.d_model=16", "model.n_layers=3", "train.steps=40",
        "train.eval_every=10", "train.checkpoint_every=20", "train.progress=false", "eval_size=64", "batch_size=32",
        "three_param_steps=200", "three_param_seeds=2"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "two-hop-tiny"
    study = TwoHopStudy()
    cfg = apply_overrides(study.quick_config(), TINY)
    summary = study.run(cfg, out, quick=True)
    return out, summary


@pytest.mark.slow
def test_summary_has_every_claim_with_status(tiny_run):
    out, summary = tiny_run
    data = json.loads((out / "summary.json").read_text())
    ids = {c["id"] for c in data["claims"]}
    assert {"slow_phase_random_guessing", "transition_to_full_accuracy", "transition_is_abrupt",
            "transition_step_paper_config", "three_param_plateau_then_collapse", "mechanism_layers",
            "mechanism_order"} <= ids
    for c in data["claims"]:
        assert c["status"] in ("pass", "fail", "not_comparable")
        assert {"claim", "paper_value", "measured", "tolerance"} <= set(c)
    by_id = {c["id"]: c for c in data["claims"]}
    # consistency of status with the measured number (40 steps cannot solve the task)
    final_acc = data["metrics"]["final"]["acc"]
    assert (by_id["transition_to_full_accuracy"]["status"] == "pass") == (final_acc >= SOLVED_ACC and
                                                                          data["metrics"]["transition"]["t_half"] is not None)
    assert by_id["transition_step_paper_config"]["status"] == "not_comparable"  # d_model 16 is not the paper's
    assert data["seed"] == 42 and data["task_version"] == "two_hop/1" and data["config"]["model"]["d_model"] == 16
    assert data["provenance"]["torch"]
    for fig in ("training.png", "attention.png", "three_param.png"):
        assert (out / fig).stat().st_size > 1000
    assert data["n_pass"] + data["n_fail"] + data["n_not_comparable"] == len(data["claims"])


@pytest.mark.slow
def test_rerun_resumes_finished_run(tiny_run):
    out, summary = tiny_run
    study = TwoHopStudy()
    again = study.run(apply_overrides(study.quick_config(), TINY), out, quick=True)
    assert again.metrics["final"] == summary.metrics["final"]


@pytest.mark.slow
def test_report_contains_claims_and_figures(tiny_run, tmp_path):
    out, _ = tiny_run
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "summary.json").write_text("{oops")
    page, n = build_report(out.parent, tmp_path / "r.html")
    text = page.read_text()
    assert n == 1 and "slow_phase_random_guessing" in text and "data:image/png;base64," in text
    page, n = build_report(tmp_path, tmp_path / "r2.html")
    assert "unreadable" in page.read_text()


def test_cli_list():
    res = CliRunner().invoke(app, ["list"])
    assert res.exit_code == 0 and "two-hop" in res.output and "bigram_backcopy/1" in res.output


@pytest.mark.parametrize("args, message", [
    (["--set", "model.d_model=65", "--set", "model.n_heads=2"], "d_model (65) must be divisible by n_heads (2)"),
    (["--set", "model.d_modle=64"], "did you mean 'd_model'"),
    (["--set", "train.lr=fast"], "train.lr: expects a number"),
])
def test_cli_bad_config_is_one_clear_line(tmp_path, args, message):
    res = CliRunner().invoke(app, ["run", "two-hop", "--quick", "--out", str(tmp_path), *args])
    assert res.exit_code == 2
    assert message in res.output and "Traceback" not in res.output


def test_cli_unknown_study():
    res = CliRunner().invoke(app, ["run", "two-hopp"])
    assert res.exit_code == 2 and "did you mean 'two-hop'" in res.output


def test_cli_corrupt_checkpoint(tmp_path):
    (tmp_path / "checkpoint.pt").write_bytes(b"not a checkpoint")
    res = CliRunner().invoke(app, ["run", "two-hop", "--quick", "--out", str(tmp_path), "--no-progress"])
    assert res.exit_code == 2 and "corrupt or truncated" in res.output and "Traceback" not in res.output


def test_cli_report_without_runs(tmp_path):
    res = CliRunner().invoke(app, ["report", "--runs", str(tmp_path / "none"), "--out", str(tmp_path / "r.html")])
    assert res.exit_code == 2 and "does not exist" in res.output


@pytest.mark.slow
def test_written_config_loads_again(tiny_run):
    from lmlab.config import load_config_file
    from lmlab.studies.two_hop import TwoHopStudyConfig

    out, _ = tiny_run
    cfg = load_config_file(TwoHopStudyConfig, out / "config.json")
    assert cfg == apply_overrides(TwoHopStudy().quick_config(), TINY)
