"""Reward-model adapters: the length baseline, LLM judges and the implicit reward through lmlab.lm (DummyLM,
the tiny random Llama), and a Hugging Face sequence classifier built from a config (no weights downloaded)."""

import numpy as np
import pytest
import torch

from lmlab.lm.dummy import DummyLM
from lmlab.rewardeval.models import REWARD_MODELS, RewardModel, build_rm, rm_class

PROMPTS = ["what is two plus two?", "name a colour."]
RESPONSES = ["four.", "blue, i think."]


def test_registry_and_specs():
    assert set(REWARD_MODELS.names()) == {"length", "judge", "judge-pairwise", "implicit", "hf", "random"}
    assert not rm_class("length")[0].needs_lm and rm_class("judge")[0].needs_lm
    assert rm_class("implicit:unconditional") == (REWARD_MODELS.get("implicit"), "unconditional")
    rm = build_rm("judge-pairwise:No idea.", lm=DummyLM())
    assert rm.anchor == "No idea."
    assert build_rm("implicit:unconditional", lm=DummyLM()).reference == "unconditional"
    with pytest.raises(KeyError, match="did you mean 'judge'"):
        build_rm("judg")


def test_length_baseline():
    rm = build_rm("length")
    assert isinstance(rm, RewardModel) and rm.score("q", "  abc ") == 3.0
    assert rm.compare(["q", "q"], ["a", "abcd"], ["abc", "ab"]).tolist() == [-2.0, 2.0]


def test_judge_reads_yes_no_log_odds_from_the_lm():
    lm = DummyLM()
    rm = build_rm("judge", lm=lm)
    s = rm.score_batch(PROMPTS, RESPONSES)
    prompt = rm.judge_prompt(PROMPTS[0], RESPONSES[0])
    logits = lm.next_token_logits([prompt])[0]
    # DummyLM tokens are characters: "Yes"/" Yes"/"yes" -> "Y", "y" (the shared " " is dropped), "No" -> "N", "n"
    expect = torch.logsumexp(logits[[ord("Y"), ord("y")]], 0) - torch.logsumexp(logits[[ord("N"), ord("n")]], 0)
    assert s[0] == pytest.approx(float(expect), abs=1e-5)
    assert rm.score(PROMPTS[1], RESPONSES[1]) == pytest.approx(s[1])


@pytest.mark.slow  # builds a transformers model
def test_judge_and_implicit_on_the_tiny_llama():
    pytest.importorskip("transformers")
    from lmlab.lm.testing import tiny_hf_lm

    lm = tiny_hf_lm()
    for spec in ("judge", "judge-pairwise", "implicit"):
        rm = build_rm(spec, lm=lm)
        batch = rm.score_batch(PROMPTS, RESPONSES)
        one = [rm.score(p, r) for p, r in zip(PROMPTS, RESPONSES)]
        assert np.isfinite(batch).all() and np.allclose(batch, one, atol=1e-4), spec


def test_pairwise_judge_is_antisymmetric_and_position_fair():
    rm = build_rm("judge-pairwise", lm=DummyLM())
    ab = rm.compare(PROMPTS, RESPONSES, RESPONSES[::-1])
    ba = rm.compare(PROMPTS, RESPONSES[::-1], RESPONSES)
    assert np.allclose(ab, -ba)
    assert np.allclose(rm.compare(PROMPTS, RESPONSES, RESPONSES), 0.0)  # a response against itself: no preference
    assert np.allclose(rm.score_batch(PROMPTS, RESPONSES), rm.compare(PROMPTS, RESPONSES, [rm.anchor] * 2))


def test_implicit_reward_is_the_policy_reference_log_ratio():
    lm = DummyLM()
    rm = build_rm("implicit", lm=lm)
    s = rm.score_batch(PROMPTS, RESPONSES)
    lp = lm.logprobs([lm.chat_prompt(p) for p in PROMPTS], RESPONSES)
    ref = lm.logprobs([p + "\n" for p in PROMPTS], RESPONSES)
    assert np.allclose(s, (lp - ref).numpy(), atol=1e-5)
    same = build_rm("implicit", lm=lm, reference="lm", ref_lm=lm)
    assert np.allclose(same.score_batch(PROMPTS, RESPONSES), 0.0)  # policy == reference: no reward
    assert rm.score("q", "   ") == 0.0  # an empty response
    mean = build_rm("implicit", lm=lm, normalize="mean", beta=2.0).score_batch(PROMPTS, RESPONSES)
    assert np.allclose(mean, 2.0 * s / np.array([len(r) for r in RESPONSES]), atol=1e-5)
    with pytest.raises(ValueError, match="reference must be one of"):
        build_rm("implicit:sft", lm=lm)


def _tiny_classifier(num_labels=1):
    from transformers import LlamaConfig, LlamaForSequenceClassification

    from lmlab.lm.testing import char_tokenizer

    tok = char_tokenizer()
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                      pad_token_id=0, bos_token_id=1, eos_token_id=2, num_labels=num_labels)
    torch.manual_seed(0)
    return LlamaForSequenceClassification(cfg).eval(), tok


def test_hf_sequence_classifier_scores_match_one_by_one():
    pytest.importorskip("transformers")
    from lmlab.rewardeval.models.hf_classifier import HFClassifierRM

    model, tok = _tiny_classifier()
    rm = HFClassifierRM(model, tok, batch_size=4)
    prompts = PROMPTS + ["a much longer question, so that the batch needs padding?"]
    responses = RESPONSES + ["ok."]
    batch = rm.score_batch(prompts, responses)
    one = np.array([rm.score(p, r) for p, r in zip(prompts, responses)])
    assert np.allclose(batch, one, atol=1e-5) and len(set(np.round(batch, 6))) == 3
    enc = tok(rm.text(prompts[0], responses[0]), return_tensors="pt")
    with torch.no_grad():
        direct = float(model(**enc).logits[0, 0])
    assert batch[0] == pytest.approx(direct, abs=1e-5)


def test_hf_classifier_from_a_directory_and_two_label_heads(tmp_path):
    pytest.importorskip("transformers")
    from lmlab.lm import LMError
    from lmlab.rewardeval.models.hf_classifier import HFClassifierRM

    model, tok = _tiny_classifier(num_labels=2)
    model.save_pretrained(tmp_path / "rm")
    tok.save_pretrained(tmp_path / "rm")
    rm = build_rm(f"hf:{tmp_path / 'rm'}")
    enc = tok(rm.text(PROMPTS[0], RESPONSES[0]), return_tensors="pt")
    with torch.no_grad():
        logit = model(**enc).logits[0]
    assert rm.score(PROMPTS[0], RESPONSES[0]) == pytest.approx(float(logit[1] - logit[0]), abs=1e-5)
    with pytest.raises(LMError, match="no config.json"):
        build_rm(f"hf:{tmp_path}")
    model3, tok3 = _tiny_classifier(num_labels=3)
    with pytest.raises(ValueError, match="1 or 2 labels"):
        HFClassifierRM(model3, tok3)


def test_the_study_asks_a_model_that_runs_here_only_for_the_implicit_reward():
    # the judges fall back to a generated Yes/No with an HTTP endpoint; the implicit reward has no fallback
    from lmlab.lm import LMError
    from lmlab.studies.reward_eval import RewardEvalConfig, RewardEvalStudy

    study, url = RewardEvalStudy(), "http://127.0.0.1:9/v1#m"  # never contacted
    assert study.lm_needs(RewardEvalConfig(rms=("length", "judge", "judge-pairwise"))) == ()
    assert study.lm_needs(RewardEvalConfig(rms=("judge", "implicit:unconditional"))) == ("logits",)
    cfg = RewardEvalConfig(rms=("length", "implicit"))
    study.check_lm(cfg)  # the default model runs here
    with pytest.raises(LMError, match="no 'logits' capability"):
        study.check_lm(cfg.replace(lm=cfg.lm.replace(model=url)))
    study.check_lm(cfg.replace(rms=("judge",), lm=cfg.lm.replace(model=url)))
