"""The muli study end to end on a tiny random Llama and a tiny synthetic data file; `lmlab moderate` on its output."""

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("transformers")
pytest.importorskip("sklearn")

from typer.testing import CliRunner  # noqa: E402

from lmlab.cli import app  # noqa: E402
from lmlab.config import LMConfig  # noqa: E402
from lmlab.lm.testing import tiny_model_dir  # noqa: E402
from lmlab.moderation import DETECTORS, ToxicityScorer  # noqa: E402
from lmlab.studies.muli import MULIConfig, MULIStudy  # noqa: E402

DATA = str(Path(__file__).parents[1] / "data" / "moderation-tiny.jsonl")


def json_rows(output):
    """The JSON lines of the output (stderr progress bars of transformers may share the runner's output)."""
    return [json.loads(line[line.index('{"index"'):]) for line in output.splitlines() if '{"index"' in line]


class LengthDetector(ToxicityScorer):
    """A detector added by a test: this class and one registry line (``registered_detector``); the study builds it
    with the default ``from_study`` (a baseline, ``cls(seed=cfg.seed)``) and fits it on the prompt texts."""

    kind = "prompt-length"

    def __init__(self, seed: int = 0):
        self.seed = seed

    def fit(self, prompts, y):
        return self

    def decision_function(self, prompts):
        return np.array([len(p) for p in prompts], dtype=float)


@pytest.fixture(scope="module")
def registered_detector():
    DETECTORS.register("prompt-length", f"{__name__}:LengthDetector")
    yield "prompt-length"
    DETECTORS.entries.pop("prompt-length")


@pytest.fixture(scope="module")
def run(tmp_path_factory, registered_detector):
    tmp = tmp_path_factory.mktemp("muli")
    model = str(tiny_model_dir(tmp / "model"))
    # oof_folds=2 (default 5): the out-of-fold assertions below hold for any number of folds
    cfg = MULIConfig(lm=LMConfig(model=model), data=DATA, detectors=("muli", "refusal-token", "tfidf-lr", registered_detector),
                     n_boot=20, cache_dir=str(tmp / "cache"), toy_tokens=("s", "i"), train_fractions=(0.5, 1.0),
                     progress=False, max_prompt_tokens=32, oof_folds=2)
    summary = MULIStudy().run(cfg, tmp / "out")
    return tmp, model, cfg, summary


@pytest.fixture(scope="module")
def again(run):
    """A second run of the same config sharing the first run's feature cache (every first-token logit reused); the
    two tests that need such a run read this one."""
    tmp, _, cfg, _ = run
    return MULIStudy().run(cfg, tmp / "out2")


@pytest.mark.slow
def test_study_writes_summary_figures_and_detectors(run, again):
    tmp, _, cfg, summary = run
    out = tmp / "out"
    d = json.loads((out / "summary.json").read_text())
    ids = {c["id"] for c in d["claims"]}
    assert {"muli_beats_tfidf", "acc_opt_openai_moderation", "tpr_at_0.1pct_fpr", "cross_dataset_acc_opt",
            "small_training_sets"} <= ids and "muli_beats_single_token" not in ids
    oof = d["metrics"]["out_of_fold"]["MULI (first-token logits)"]
    assert oof["n_neg"] + oof["n_pos"] == 60 and not oof["resolvable"]  # 60 prompts cannot resolve 0.1% FPR
    assert 0 <= oof["tpr_ci95"][0] <= oof["tpr"] <= oof["tpr_ci95"][1] <= 1
    for c in d["claims"]:
        assert c["status"] in ("pass", "fail", "not_comparable") and c["tolerance"]
    test = d["metrics"]["test"]
    assert set(test) == {"MULI (first-token logits)", "MULI, exact L1 optimum (liblinear)", "toy: logit('s')", "toy: logit('i')",
                         "TF-IDF + LR", "prompt-length"}
    assert d["metrics"]["split"]["n_test"] == 30 and d["metrics"]["feature_cache"]["computed"] == 60
    for f in ("muli-roc.png", "muli-pr.png", "muli-top-tokens.png", "muli-train-size.png", "detector-muli.npz",
              "detector-tfidf.npz", "detector-refusal-s.npz"):
        assert (out / f).exists(), f
    # a second run reuses every cached first-token logit and reproduces the numbers
    assert again.metrics["feature_cache"] == {**summary.metrics["feature_cache"], "computed": 0, "cached": 60}
    # equal up to float rounding in BLAS reductions: the detector is retrained in float32, and a fresh-clone CI run
    # (2026-12-02) saw acc_opt_threshold (a score value, not a rate) differ by 2.8e-6 relative between the two runs;
    # rel 1e-4 still catches any real change of a metric
    for name, r in summary.metrics["test"].items():
        for k, v in r.items():
            assert again.metrics["test"][name][k] == (pytest.approx(v, rel=1e-4) if not isinstance(v, dict) else v), k


@pytest.mark.slow
def test_a_new_registered_detector_is_evaluated_by_name(run):
    """The test's LengthDetector, listed in MULIConfig.detectors, is fitted, scored, bootstrapped against MULI,
    retrained in the training-size sweep, judged by a claim and saved, with no change to the study."""
    tmp, _, _, summary = run
    m = summary.metrics
    assert m["test"]["prompt-length"]["n"] == 30
    assert "MULI (first-token logits) - prompt-length" in m["bootstrap"]["differences"]
    assert all("prompt-length" in row for row in m["train_size_sweep"].values())
    assert "muli_beats_prompt_length" in {c.id for c in summary.claims}
    assert (tmp / "out" / "detector-prompt-length.npz").exists()


@pytest.mark.slow
def test_moderate_cli_scores_and_refuses_another_model(run, tmp_path):
    tmp, model, _, _ = run
    det = str(tmp / "out" / "detector-muli.npz")
    # the study saved model_spec = the tiny model's directory, so the CLI loads it by itself
    res = CliRunner().invoke(app, ["moderate", "hello there", "you stupid idiot", "--detector", det])
    assert res.exit_code == 0, res.output
    rows = json_rows(res.output)
    assert [r["index"] for r in rows] == [0, 1] and all(0 <= r["p_toxic"] <= 1 for r in rows)
    assert "text" not in rows[0]  # texts are not echoed unless asked
    other = str(tiny_model_dir(tmp_path / "other", seed=7))
    res = CliRunner().invoke(app, ["moderate", "hi", "--detector", det, "--model", other])
    assert res.exit_code == 2 and "error: detector" in res.output and "fingerprint" in res.output
    res = CliRunner().invoke(app, ["moderate", "hi"])
    assert res.exit_code == 2 and "--detector is required" in res.output
    tfidf = str(tmp / "out" / "detector-tfidf.npz")
    res = CliRunner().invoke(app, ["moderate", "hi", "--detector", tfidf, "--show-text"])
    assert res.exit_code == 0 and json_rows(res.output)[0]["text"] == "hi"


def test_bad_config_fields():
    from lmlab.config import ConfigError

    with pytest.raises(ConfigError, match="test_frac"):
        MULIConfig(test_frac=1.0)
    with pytest.raises(ConfigError, match="fprs"):
        MULIConfig(fprs=(0.0,))
    with pytest.raises(ConfigError, match="MULIConfig.detectors: unknown detector 'tfidf'; did you mean 'tfidf-lr'"):
        MULIConfig(detectors=("muli", "tfidf"))


def test_bad_data_file_is_one_line_cli_error(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "x", "S": 7}\n')
    res = CliRunner().invoke(app, ["run", "muli", "--quick", "--set", f"data={bad}", "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "bad.jsonl:1: field 'S' must be 0 or 1" in res.output


@pytest.mark.slow
def test_stages_record_computed_then_reused(run, again):
    """summary.json's stages: the fixture's run computed the first-token logits; a run sharing its cache reuses
    every row under the same fingerprint (a changed key is recomputed: tests/unit/test_io.py)."""
    first = run[3]
    a, b = first.stages["first_token_logits"], again.stages["first_token_logits"]
    assert set(first.stages) == {"first_token_logits"} == set(again.stages)
    assert a["computed"] and a["n_computed"] == 60 and not b["computed"] and b["n_reused"] == 60
    assert a["fingerprint"] == b["fingerprint"] != ""
    assert b["reason"] == "reused: 60 entries with the same fingerprint"


def test_embedding_cache_stage(tmp_path):
    """The MiniLM baseline's embedding cache says computed, then reused with the same fingerprint."""
    from lmlab.moderation.embed_lr import EmbeddingDetector

    class FakeEmbedder:
        name, fingerprint = "fake", "fake-0"

        def encode(self, texts):
            return np.array([[len(t), t.count("a"), 1.0] for t in texts], dtype=np.float32)

    texts = ["abc", "a", "bb"]
    first = EmbeddingDetector(FakeEmbedder(), cache_dir=tmp_path)
    first.embed(texts)
    again = EmbeddingDetector(FakeEmbedder(), cache_dir=tmp_path)
    again.embed(texts)
    assert first.cache_stage["computed"] and first.cache_stage["n_computed"] == 3
    assert not again.cache_stage["computed"] and again.cache_stage["n_reused"] == 3
    assert first.cache_stage["fingerprint"] == again.cache_stage["fingerprint"]
