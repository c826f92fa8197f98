"""llm-two-hop and llm-sinks end to end on a tiny random Llama saved to a directory (no hub, no model wheel)."""

import json

import pytest

pytest.importorskip("transformers")

from typer.testing import CliRunner  # noqa: E402

from lmlab.cli import app  # noqa: E402
from lmlab.config import ConfigError, LMConfig  # noqa: E402
from lmlab.lm.testing import tiny_model_dir  # noqa: E402
from lmlab.studies.llm_sinks import LLMSinksConfig, LLMSinksStudy  # noqa: E402
from lmlab.studies.llm_two_hop import (MIN_P_TARGET_NO_DISTRACTOR, NAMES, LLMTwoHopConfig, LLMTwoHopStudy,  # noqa: E402
                                       make_prompts)

WORDS = list(NAMES) + ["The", "the", "boss", "of", "is", ".", "Therefore", ",", "apple", "river", "def", "return",
                       "self", "(", ")", ":", "=", "0", "1", "2", "3"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return str(tiny_model_dir(tmp_path_factory.mktemp("tiny-llama"), WORDS))


def test_prompts_follow_the_task_format():
    names = list(NAMES[:15])
    data = make_prompts(LLMTwoHopConfig(n_prompts=3), 2, names, seed=0)
    assert data["chains"].shape == (3, 3, 3)
    p = data["prompts"][0]
    assert p.count("The boss of") == 6 and p.endswith("is")
    src, brg, end = (names[i] for i in data["chains"][0, data["query"][0]])
    assert f"The boss of {src} is {brg}." in p and f"The boss of {brg} is {end}." in p
    assert p.index(f"of {src} is {brg}.") < p.index(f"of {brg} is {end}.")  # each chain keeps its order
    assert p.endswith(f"the boss of the boss of {src} is")


@pytest.mark.slow
def test_llm_two_hop_tiny_run(tmp_path, model_dir):
    cfg = LLMTwoHopConfig(lm=LMConfig(model=model_dir), n_prompts=6, ks=(0, 1, 2), progress=False)
    summary = LLMTwoHopStudy().run(cfg, tmp_path)
    data = json.loads((tmp_path / "summary.json").read_text())
    ids = [c["id"] for c in data["claims"]]
    assert ids == ["answers_without_distractors", "guesses_among_ends", "errors_on_distractor_ends", "lora_fixes_it"]
    per_k = data["metrics"]["per_k"]
    assert set(per_k) == {"0", "1", "2"}
    for K, row in per_k.items():
        assert row["n"] == 6 and sum(row["errors"].values()) == row["n_errors"]
        assert 0 <= row["p_target_among_candidates"] <= 1
    assert per_k["0"]["p_target_among_candidates"] == 1.0  # one candidate
    by_id = {c["id"]: c for c in data["claims"]}
    assert (by_id["answers_without_distractors"]["status"] == "pass") == (per_k["0"]["p_target"] >= MIN_P_TARGET_NO_DISTRACTOR)
    for fig in summary.figures:
        assert (tmp_path / fig).stat().st_size > 1000


@pytest.mark.slow
def test_llm_sinks_tiny_run(tmp_path, model_dir):
    cfg = LLMSinksConfig(lm=LMConfig(model=model_dir, batch_size=2), n_texts=3, seq_len=12, progress=False, skip_layers=0)
    summary = LLMSinksStudy().run(cfg, tmp_path)
    data = json.loads((tmp_path / "summary.json").read_text())
    assert [c["id"] for c in data["claims"]] == ["attention_sink", "value_drain", "residual_peak", "active_dormant_switch",
                                                 "code_vs_prose_switch"]
    m = data["metrics"]
    assert m["n_layers"] == 2 and m["n_heads"] == 4
    rep = m["switch_replication"]
    assert set(rep["null_by_domain"]) == {"prose", "docs", "code", "numbers"}  # the switch domains
    assert rep["n_cross"] == len(rep["cross"]) and "code_active_docs_dormant" in rep
    for d in ("prose", "docs", "code", "numbers", "repeated"):
        share = m["per_domain"][d]["sink_share"]
        assert len(share) == 2 and len(share[0]) == 4 and all(0 <= s <= 1 for row in share for s in row)
        assert len(m["per_domain"][d]["value_ratio"][0]) == 2  # KV heads
        assert len(m["per_domain"][d]["value_out_ratio"][0]) == 4  # W_O v per query head
        assert sum(m["head_counts"][d].values()) == 8
    for fig in summary.figures:
        assert (tmp_path / fig).stat().st_size > 1000


def test_reference_prose_is_prose():
    from lmlab.studies.llm_sinks import reference_prose

    text = reference_prose()
    assert len(text) > 50_000 and ">>>" not in text and "\n   " not in text


@pytest.mark.slow
def test_llm_two_hop_lora_finetune_changes_the_model(tmp_path, model_dir):
    cfg = LLMTwoHopConfig(lm=LMConfig(model=model_dir), n_prompts=4, ks=(0, 1), finetune_steps=2, finetune_batch=2,
                          finetune_lr=1e-2, progress=False)
    summary = LLMTwoHopStudy().run(cfg, tmp_path)
    ft = summary.metrics["finetune"]
    assert ft["steps"] == 2 and ft["trainable_parameters"] > 0 and len(ft["loss_by_step"]) == 2
    after, before = summary.metrics["per_k_after_finetune"], summary.metrics["per_k"]
    assert set(after) == {"0", "1"} and any(after[k]["p_target"] != before[k]["p_target"] for k in after)
    lora = next(c for c in summary.claims if c.id == "lora_fixes_it")
    assert lora.status in ("pass", "fail") and "LoRA" in lora.tolerance


@pytest.mark.slow
def test_llm_two_hop_lora_finetune_does_not_depend_on_the_global_rng(model_dir):
    """The adapters' random init is seeded by the config, not by whatever ran before in the process."""
    import numpy as np
    import torch

    from lmlab.lm import load_lm
    from lmlab.studies.llm_two_hop import finetune_lora

    cfg = LLMTwoHopConfig(lm=LMConfig(model=model_dir), n_prompts=6, ks=(1,), finetune_steps=3, finetune_batch=2,
                          finetune_lr=1e-2, progress=False)
    names = list(NAMES)
    data = make_prompts(cfg, 1, names, cfg.seed)
    losses = []
    for state in (1, 2):
        lm = load_lm(model_dir)
        name_ids = np.array([lm.encode(" " + n)[0] for n in names])
        targets = name_ids[data["chains"][np.arange(len(data["query"])), data["query"], 2]]
        torch.manual_seed(state)
        torch.rand(100)
        losses.append(finetune_lora(lm, data["prompts"], targets, cfg)["loss_by_step"])
    assert losses[0] == losses[1]


def test_configs_validate():
    with pytest.raises(ConfigError, match="domains"):
        LLMSinksConfig(domains=("poetry",))
    with pytest.raises(ConfigError, match="question"):
        LLMTwoHopConfig(question="no source here")
    with pytest.raises(ConfigError, match="ks"):
        LLMTwoHopConfig(ks=())


def test_cli_model_option_and_clear_errors(tmp_path):
    runner = CliRunner()
    res = runner.invoke(app, ["run", "llm-sinks", "--quick", "--model", str(tmp_path / "nope"), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "does not exist" in res.output
    res = runner.invoke(app, ["run", "extreme-tokens", "--quick", "--model", "x", "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "--model is for studies with an lm section" in res.output
