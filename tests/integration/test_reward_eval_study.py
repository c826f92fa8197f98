"""reward-eval end to end with DummyLM (no weights), and `lmlab run reward-eval --rm ... --data ...`."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from lmlab.cli import app
from lmlab.config import LMConfig
from lmlab.rewardeval.data import bok_row, write_rows
from lmlab.rewardeval.models import REWARD_MODELS, RewardModel
from lmlab.studies.reward_eval import RewardEvalConfig, RewardEvalStudy

CLAIMS = ["bok_overoptimisation", "correctness_metrics_agree", "preference_accuracy_best_predictor",
          "low_quantile_aggregation", "rewardbench_negative"]


@pytest.mark.slow
def test_tiny_run_with_dummy_lm_and_resume(tmp_path):
    cfg = RewardEvalConfig(lm=LMConfig(model="dummy"), per_level=2, K=4, n_preference_pairs=6, max_new_tokens=6, n_boot=50,
                           progress=False)
    summary = RewardEvalStudy().run(cfg, tmp_path)
    data = json.loads((tmp_path / "summary.json").read_text())
    assert [c["id"] for c in data["claims"]] == CLAIMS
    assert {c["status"] for c in data["claims"][2:]} == {"not_comparable"}
    bok = data["metrics"]["best_of_k"]["correctness"]
    assert {"arithmetic", "compare", "arithmetic/L1", "compare/L2", "all"} <= set(bok["groups"])
    for row in bok["groups"].values():
        for r in row["rms"].values():
            assert all(b <= o + 1e-9 for b, o in zip(r["curve"], r["oracle"]))
    pref = data["metrics"]["preference"]["hh-rlhf"]
    assert pref["n_pairs"] == 6 and set(pref["rms"]) == {"length", "judge", "implicit"}
    assert (tmp_path / "metrics_table.md").read_text().startswith("### best-of-K")
    for fig in summary.figures:
        assert (tmp_path / fig).stat().st_size > 1000
    # resuming from the run directory (cached samples and scores) reproduces the numbers
    again = RewardEvalStudy().run(cfg, tmp_path)
    assert again.to_dict()["metrics"]["best_of_k"] == summary.to_dict()["metrics"]["best_of_k"]
    assert again.to_dict()["metrics"]["preference"] == summary.to_dict()["metrics"]["preference"]


def _files(tmp_path):
    rng = np.random.default_rng(0)
    rows = []
    for i in range(12):
        labels = rng.random(6) < 0.5
        responses = ["x" * (30 if c else 5) + str(j) for j, c in enumerate(labels)]  # correct answers are long
        rows.append(bok_row(f"q{i}", "p", "m", responses, labels, domain="math" if i % 2 else "code"))
    bok = write_rows(rows, tmp_path / "bok.jsonl")
    models = ["m1", "m2", "m3", "m4"]
    prefs = []
    for i in range(60):
        a, b = rng.choice(4, 2, replace=False)
        prefs.append({"question_id": str(i), "prompt": "q", "response_1": "y" * (10 + 10 * a),
                      "response_2": "y" * (10 + 10 * b), "model_a": models[a], "model_b": models[b],
                      "winner": "model_a" if a > b else "model_b", "language": "English"})
    pref = write_rows(prefs, tmp_path / "pref.jsonl")
    return bok, pref


@pytest.mark.slow
def test_cli_with_rm_and_data_files(tmp_path):
    bok, pref = _files(tmp_path)
    out = tmp_path / "run"
    res = CliRunner().invoke(app, ["run", "reward-eval", "--rm", "length", "--data", str(bok), "--data", str(pref),
                                   "--out", str(out), "--no-progress", "--set", "n_boot=50"])
    assert res.exit_code == 0, res.output
    data = json.loads((out / "summary.json").read_text())
    assert data["config"]["rms"] == ["length"] and data["metrics"]["model"] is None  # no LM was loaded
    groups = data["metrics"]["best_of_k"]["bok.jsonl"]["groups"]
    assert groups["math"]["rms"]["length"]["pairwise_accuracy"] == 1.0  # length is the label here
    assert groups["all"]["rms"]["length"]["curve"] == pytest.approx(groups["all"]["rms"]["length"]["oracle"])
    p = data["metrics"]["preference"]["pref.jsonl"]["rms"]["length"]
    assert p["accuracy"] == 1.0 and p["spearman"] == pytest.approx(1.0) and p["kendall"] == pytest.approx(1.0)


def test_cli_reports_a_bad_row_in_one_line_or_skips_it(tmp_path):
    bok, _ = _files(tmp_path)
    lines = bok.read_text().splitlines()
    bad = json.loads(lines[1])
    bad["scores"] = bad["scores"][:-1]
    bok.write_text("\n".join([lines[0], json.dumps(bad)] + lines[2:]) + "\n")
    args = ["run", "reward-eval", "--rm", "length", "--data", str(bok), "--no-progress", "--set", "n_boot=20"]
    res = CliRunner().invoke(app, args + ["--out", str(tmp_path / "a")])
    assert res.exit_code == 2
    assert res.output.startswith("error: ") and "line 2: field 'scores' has 5 entries" in res.output
    assert len(res.output.strip().splitlines()) == 1
    res = CliRunner().invoke(app, args + ["--out", str(tmp_path / "b"), "--set", "on_bad_row=skip"])
    assert res.exit_code == 0, res.output
    assert "warning: skipped 1 malformed row(s)" in res.output
    data = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert data["metrics"]["data"]["bok.jsonl"]["rows"] == 11
    assert data["metrics"]["data"]["bok.jsonl"]["skipped_rows"][0][0] == 2


def test_cli_rm_is_refused_by_other_studies_and_unknown_rms_named(tmp_path):
    res = CliRunner().invoke(app, ["run", "reversal-curse", "--quick", "--rm", "length", "--out", str(tmp_path)])
    assert res.exit_code == 2 and "--rm: study 'reversal-curse' takes no --rm" in res.output
    res = CliRunner().invoke(app, ["run", "reward-eval", "--rm", "length", "--data", str(tmp_path / "none.jsonl"),
                                   "--out", str(tmp_path)])
    assert res.exit_code == 2 and "data: file" in res.output and "does not exist" in res.output
    bok, _ = _files(tmp_path)
    res = CliRunner().invoke(app, ["run", "reward-eval", "--rm", "lenght", "--data", str(bok), "--out", str(tmp_path)])
    assert res.exit_code == 2 and "did you mean 'length'" in res.output


def test_scoring_resumes_from_a_partial_cache_and_ignores_a_stale_one(tmp_path):
    from lmlab.rewardeval.models import build_rm
    from lmlab.rewardeval.scoring import cached_scores, rm_cache

    rm = build_rm("length")
    items = [f"text {i}" for i in range(10)]
    calls, current = [], [items]

    def fn(idx):
        calls.append(idx[0])
        if len(calls) == 3 and stop:
            raise KeyboardInterrupt  # killed during the third chunk
        return [len(current[0][i]) * 1.5 for i in idx]

    stop = True
    with pytest.raises(KeyboardInterrupt):
        cached_scores(rm, items, fn, tmp_path, 3, "t")
    assert calls == [0, 3, 6] and len(rm_cache(rm, tmp_path, "t")) == 6  # two chunks were committed
    stop, calls[:] = False, []
    full = cached_scores(rm, items, fn, tmp_path, 3, "t")
    assert calls == [6, 9] and full.tolist() == [len(x) * 1.5 for x in items]
    calls.clear()
    other = current[0] = items[:-1] + ["changed"]
    assert cached_scores(rm, other, fn, tmp_path, 3, "t")[-1] == len("changed") * 1.5
    assert calls == [9]  # only the changed text is scored afresh
    calls.clear()
    current[0] = items
    cached_scores(build_rm("length"), items, fn, tmp_path, 3, "t", fn_name="compare")  # another function: its own key
    assert calls == [0, 3, 6, 9]


class DigitsRM(RewardModel):
    """A reward model added by a test: one class, one registry line (``registered_rm``)."""

    name = "digits"

    def score_batch(self, prompts, responses):
        return np.array([float(sum(ch.isdigit() for ch in r)) for r in responses])


@pytest.fixture
def registered_rm():
    REWARD_MODELS.register("digits", f"{__name__}:DigitsRM")
    yield "digits"
    REWARD_MODELS.entries.pop("digits")


@pytest.mark.slow
def test_a_new_registered_reward_model_is_evaluated_by_name(tmp_path, registered_rm):
    bok, pref = _files(tmp_path)
    cfg = RewardEvalConfig(rms=("length", registered_rm), data=(str(bok), str(pref)), n_boot=20, progress=False)
    RewardEvalStudy().run(cfg, tmp_path / "run")
    data = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert data["metrics"]["model"] is None  # neither RM needs an LM (a class attribute)
    groups = data["metrics"]["best_of_k"]["bok.jsonl"]["groups"]
    assert set(groups["math"]["rms"]) == {"length", "digits"}
    assert set(data["metrics"]["preference"]["pref.jsonl"]["rms"]) == {"length", "digits"}
    assert "| digits |" in (tmp_path / "run" / "metrics_table.md").read_text()


def test_overoptimisation_needs_a_correlated_rm_and_fails_under_the_control(tmp_path):
    """Length is correlated with correctness here but the single longest response is always wrong: best-of-8 by
    length falls to 0. The rule passes for `length` and fails for the control's random reward models."""
    rows = []
    for i in range(24):
        lengths, labels = [20, 25, 30, 35, 5, 10, 15, 60], [1, 1, 1, 1, 0, 0, 0, 0]
        rows.append(bok_row(f"q{i}", f"question {i}", "m", [f"{i}:" + "x" * n for n in lengths], labels,
                            domain="math" if i % 2 else "code"))
    path = write_rows(rows, tmp_path / "bok.jsonl")
    cfg = RewardEvalConfig(rms=("length",), data=(str(path),), n_boot=100, progress=False)
    study = RewardEvalStudy()
    real = {c.id: c for c in study.run(cfg, tmp_path / "real").claims}
    assert real["bok_overoptimisation"].status == "pass"
    assert real["bok_overoptimisation"].measured["n_cells_rm_correlated"] == 2
    control = study.run(cfg, tmp_path / "control", control=True)
    c = {c.id: c for c in control.claims}
    assert control.control and c["bok_overoptimisation"].status == "fail"
    assert c["bok_overoptimisation"].measured["n_cells_rm_correlated"] == 0


@pytest.mark.slow
def test_stages_record_computed_then_reused(tmp_path):
    """summary.json's stages: the correctness set and each (set, RM) score cache are computed on the first run,
    reused with the same fingerprint on the second; a changed sampling setting rebuilds the set and says why."""
    cfg = RewardEvalConfig(lm=LMConfig(model="dummy"), per_level=1, K=4, n_preference_pairs=4, max_new_tokens=4,
                           n_boot=20, rms=("length", "judge"), progress=False)
    first = RewardEvalStudy().run(cfg, tmp_path)
    again = RewardEvalStudy().run(cfg, tmp_path)
    names = {"correctness_set", "scores:correctness:length", "scores:correctness:judge", "scores:hh-rlhf:length",
             "scores:hh-rlhf:judge"}
    assert set(first.stages) == names == set(again.stages)
    for n in names:
        assert first.stages[n]["computed"] and not again.stages[n]["computed"], n
        assert first.stages[n]["fingerprint"] == again.stages[n]["fingerprint"] != "", n
        assert again.stages[n]["n_computed"] == 0 and again.stages[n]["n_reused"] > 0, n
    assert again.stages["correctness_set"]["reason"] == "reused: 5 entries with the same fingerprint"
    hotter = RewardEvalStudy().run(cfg.replace(temperature=0.9), tmp_path)
    st = hotter.stages["correctness_set"]
    assert st["computed"] and st["fingerprint"] != again.stages["correctness_set"]["fingerprint"]
    assert st["reason"] == "computed now (5 entries): earlier ones not used because config changed"
    assert not hotter.stages["scores:hh-rlhf:length"]["computed"]  # the preference pairs did not change
