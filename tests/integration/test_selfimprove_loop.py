"""The whole self-improvement loop on a tiny random Llama (character tokenizer): sampling, the verifiable judge,
pair selection, DPO through TRL, resume, Meta-Rewarding's mixed actor + judge batch, and bad input."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("trl")

from lmlab.lm import LMError, load_lm  # noqa: E402
from lmlab.selfimprove.dpo import DPOSettings, fit_counts, run_dpo  # noqa: E402
from lmlab.selfimprove.judges import build_judge  # noqa: E402
from lmlab.selfimprove.loop import Item, IterationConfig, SelfImproveError, run_iteration  # noqa: E402
from lmlab.train.loop import TrainConfig  # noqa: E402

pytestmark = pytest.mark.slow

# one-digit sums: a random character model sometimes ends its output with the right digit, so the verifiable
# judge separates samples
ITEMS = [Item(f"q{i}", f"{i % 5}+{i % 4}", i % 5 + i % 4) for i in range(16)]
CFG = IterationConfig(K=8, max_new_tokens=6, chunk=4)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    from lmlab.lm.testing import tiny_model_dir

    return str(tiny_model_dir(tmp_path_factory.mktemp("tiny")))


def _lm(path):
    return load_lm(path, needs=("trainable",))


def test_dpo_loss_falls_and_margin_grows_over_two_mini_iterations(tiny_dir, tmp_path):
    lm = _lm(tiny_dir)
    judge = build_judge("verifiable")
    margins, losses = [], []
    for t in range(2):
        rec = run_iteration(lm, ITEMS, CFG, DPOSettings(batch_size=4, epochs=2), TrainConfig(lr=5e-3, steps=100, seed=0),
                            tmp_path / f"iter{t}", judge, seed=t)
        log = rec["dpo"]["log"]
        assert rec["pairs"]["pairs"] >= 3 and log
        losses.append((log[0]["loss"], log[-1]["loss"]))
        margins.append((log[0]["rewards/margins"], log[-1]["rewards/margins"]))
        assert (tmp_path / f"iter{t}" / "model" / "config.json").exists()
    for (first, last), (m0, m1) in zip(losses, margins):
        assert last < first and m1 > m0  # within each iteration (reference = M_t, so each starts at log 2)
    assert losses[1][1] < np.log(2) and margins[1][1] > 0


def test_resume_mid_iteration_gives_the_same_pairs(tiny_dir, tmp_path):
    judge = build_judge("verifiable")
    whole = run_iteration(_lm(tiny_dir), ITEMS, CFG, DPOSettings(), TrainConfig(lr=1e-3), tmp_path / "a", judge,
                          seed=3, learn=False)
    assert not whole.get("interrupted")
    part = run_iteration(_lm(tiny_dir), ITEMS, CFG, DPOSettings(), TrainConfig(lr=1e-3), tmp_path / "b", judge,
                         seed=3, learn=False, stop_after_chunks=2)
    assert part["interrupted"] and part["sampled"] == 8
    with (tmp_path / "b" / "samples.jsonl").open("a") as f:
        f.write('{"id": "q9", "prompt": "cut sho')  # a line cut short by a kill
    run_iteration(_lm(tiny_dir), ITEMS, CFG, DPOSettings(), TrainConfig(lr=1e-3), tmp_path / "b", judge, seed=3,
                  learn=False)
    a = (tmp_path / "a" / "pairs.jsonl").read_text()
    b = (tmp_path / "b" / "pairs.jsonl").read_text()
    assert a == b and a.strip()


def test_meta_rewarding_actor_and_judge_pairs_in_one_batch(tiny_dir, tmp_path):
    from lmlab.selfimprove.meta import judge_pairs

    class MetaJudge:  # prefers the judgment that gives the higher score, in either position
        def chat_prompt(self, text, system=None):
            return text

        def generate(self, prompts, **kw):
            out = []
            for p in prompts:
                a = p.split("<judgment A>")[1].split("Score: ")[1][0]
                b = p.split("<judgment B>")[1].split("Score: ")[1][0]
                out.append("Winner: Judgment A" if a > b else "Winner: Judgment B")
            return out

    items = [Item("q0", "1+2", 3)]
    parsed = {"q0": [(0, "", "3"), (1, "", "4")]}
    scored = {"q0": {"index": [0, 1], "scores": [3.0, 3.0],
                     "judgments": [[["ok. Score: 3", 3.0]] * 3, [["bad. Score: 1", 1.0], ["good. Score: 5", 5.0],
                                                                 ["fine. Score: 3", 3.0]]]}}
    pairs, stats = judge_pairs(MetaJudge(), items, {"q0": ["3", "4"]}, scored, parsed, tmp_path)
    assert stats["pairs"] == 1 and stats["meta_parse_rate"] == 1.0
    assert pairs[0]["chosen"] == "good. Score: 5" and pairs[0]["rejected"] == "bad. Score: 1"
    actor = [{"prompt": "user: 1+2\nassistant:", "chosen": "3", "rejected": "4", "kind": "actor"}]
    lm = _lm(tiny_dir)
    # the judge pair's prompt is the rubric prompt (~2,000 characters, one token each here): at the default
    # max_length TRL would drop it, so the batch would hold the actor pair only
    assert fit_counts(lm.hf_tokenizer, pairs, 512)["pairs_dropped_by_max_length"] == 1
    res = run_dpo(lm, actor + pairs, DPOSettings(batch_size=2, max_length=4096), TrainConfig(lr=1e-3, steps=1),
                  tmp_path / "dpo")
    assert res["steps"] == 1 and res["n_pairs"] == 2 and len(res["log"]) == 1  # one batch holding both kinds
    assert res["pairs_dropped_by_max_length"] == 0 and res["pairs_truncated"] == 0


def test_lora_dpo_merges_back(tiny_dir, tmp_path):
    lm = _lm(tiny_dir)
    before = {k: v.clone() for k, v in lm.hf_model.state_dict().items()}
    pairs = [{"prompt": "user: 1+2\nassistant:", "chosen": "3", "rejected": "9 no"}] * 4
    run_dpo(lm, pairs, DPOSettings(batch_size=2, lora=True, lora_r=4), TrainConfig(lr=5e-2, steps=2), tmp_path)
    after = lm.hf_model.state_dict()
    assert set(after) == set(before)  # a plain model again (no lora_ keys)
    assert any(not np.allclose(before[k], after[k]) for k in before)


def test_bad_input_one_line_errors(tiny_dir, tmp_path):
    with pytest.raises(LMError) as e:  # a model without weights cannot be the trained role
        load_lm("http://127.0.0.1:9/v1#m", needs=("trainable",))
    assert "trainable" in str(e.value) and "\n" not in str(e.value)
    dummy = load_lm("dummy")
    with pytest.raises(SelfImproveError, match="no 'trainable' capability"):
        run_iteration(dummy, ITEMS, CFG, DPOSettings(), TrainConfig(lr=1e-3), tmp_path / "d", build_judge("verifiable"))
    lm = _lm(tiny_dir)
    lm.generate_with = "hf"  # through lm.generate, which answers nothing:
    lm.generate = lambda prompts, **kw: [""] * len(prompts)
    with pytest.raises(SelfImproveError, match="empty or malformed") as e:
        run_iteration(lm, ITEMS, CFG, DPOSettings(), TrainConfig(lr=1e-3), tmp_path / "e", build_judge("verifiable"))
    assert "\n" not in str(e.value)
    from lmlab.config import ConfigError

    with pytest.raises(ConfigError, match="no preference pairs"):
        run_dpo(lm, [], DPOSettings(), TrainConfig(lr=1e-3), tmp_path / "f")
    with pytest.raises(ConfigError, match="empty or missing 'chosen'"):
        run_dpo(lm, [{"prompt": "p", "chosen": "", "rejected": "r"}], DPOSettings(), TrainConfig(lr=1e-3), tmp_path / "g")


def test_safety_tune_on_hh_pairs_writes_a_model(tiny_dir, tmp_path):
    from lmlab.config import LMConfig
    from lmlab.selfimprove.safety import SafetyTuneConfig, hh_split, safety_tune

    train, held = hh_split(20, 10, seed=0, max_prompt_chars=100)
    assert len(train) == 20 and len(held) == 10
    assert not {r["transcript"] + r["chosen"] for r in train} & {r["transcript"] + r["chosen"] for r in held}
    cfg = SafetyTuneConfig(lm=LMConfig(model=tiny_dir), n_train=4, n_heldout=4, max_prompt_chars=60,
                           dpo=DPOSettings(batch_size=4, max_length=128))
    s = safety_tune(cfg, tmp_path)
    assert (tmp_path / "model" / "config.json").exists() and s["n_heldout"] == 4
    assert 0 <= s["heldout_reward_accuracy"] <= 1 and "muli" in s["next"]


def test_generate_rows_do_not_depend_on_their_batch(tiny_dir):
    from lmlab.selfimprove.generation import engine_of, generate_rows

    lm = _lm(tiny_dir)
    assert engine_of(lm) is not None
    prompts = [f"user: {i}+{i}\nassistant:" for i in range(6)]
    seeds = [11, 12, 13, 14, 15, 16]
    whole = generate_rows(lm, prompts, 8, temperature=0.8, top_p=0.95, seeds=seeds)
    alone = [generate_rows(lm, [p], 8, temperature=0.8, top_p=0.95, seeds=[s])[0] for p, s in zip(prompts, seeds)]
    assert whole == alone and len(set(whole)) > 1  # a row's sample depends on its seed only
    assert generate_rows(lm, prompts, 8) == lm.generate(prompts, max_new_tokens=8)  # greedy: as lm.generate


def test_rubric_judgments_resume_to_the_same_text(tiny_dir, tmp_path):
    from lmlab.selfimprove.judges import GenConfig, RubricJudge
    from lmlab.selfimprove.loop import score_prompts

    lm = _lm(tiny_dir)
    gen = GenConfig(n=2, temperature=0.8, top_p=0.95, max_new_tokens=6, seed=5)
    items = ITEMS[:4]
    parsed = {it.id: [(0, "", f"{it.answer}"), (1, "", "no")] for it in items}
    whole = score_prompts(RubricJudge(lm, gen), items, parsed, tmp_path / "a.jsonl", chunk=4)
    score_prompts(RubricJudge(lm, gen), items[:1], parsed, tmp_path / "b.jsonl", chunk=4)  # stopped after one prompt
    resumed = score_prompts(RubricJudge(lm, gen), items, parsed, tmp_path / "b.jsonl", chunk=4)  # 3 in one batch
    assert [whole[it.id]["judgments"] for it in items] == [resumed[it.id]["judgments"] for it in items]


def test_dpo_batches_grouped_by_length(tiny_dir, tmp_path):
    lm = _lm(tiny_dir)
    pairs = [{"prompt": "user: 1+2\nassistant:", "chosen": "3" * n, "rejected": "9" * n} for n in (1, 30, 2, 31)]
    res = run_dpo(lm, pairs, DPOSettings(batch_size=2, group_by_length=True), TrainConfig(lr=1e-3, steps=2), tmp_path)
    assert res["steps"] == 2 and len(res["log"]) == 2


@pytest.mark.parametrize("field, values, per_pass", [("precompute_ref", (False, True), (2, 2)),
                                                     ("micro_batch", (0, 1), (4, 1))])
def test_dpo_variants_train_the_same(tiny_dir, tmp_path, field, values, per_pass):
    """Two ways of running one DPO give the same losses, margins and final weights (float tolerance):
    TRL's precompute_ref_log_probs (reference log-probs from M_t before the first step, no reference copy) vs a
    frozen copy of M_t run in every step; and dpo.micro_batch (each batch as smaller forward passes with gradient
    accumulation) vs whole batches."""
    pairs = [{"prompt": f"user: {i}+2\nassistant:", "chosen": str(i + 2) * (1 + i % 3), "rejected": "9 no" * (1 + i % 2)}
             for i in range(8)]
    logs, weights, passes = [], [], []
    for value in values:
        lm = _lm(tiny_dir)
        res = run_dpo(lm, pairs, DPOSettings(batch_size=4, epochs=2, **{field: value}),
                      TrainConfig(lr=5e-3, steps=100, seed=0), tmp_path / str(value))
        logs.append(res["log"])
        passes.append(res["pairs_per_pass"])
        weights.append({k: v.clone() for k, v in lm.hf_model.state_dict().items()})
    assert tuple(passes) == per_pass and len(logs[0]) == len(logs[1]) == 4
    assert abs(logs[0][0]["loss"] - np.log(2)) < 1e-6 and abs(logs[1][0]["loss"] - np.log(2)) < 1e-5
    for a, b in zip(*logs):
        for k in ("loss", "rewards/margins", "rewards/chosen", "logps/chosen"):
            assert a[k] == pytest.approx(b[k], rel=1e-4, abs=1e-5), k
    assert logs[0][-1]["rewards/margins"] > logs[0][0]["rewards/margins"]  # it trained
    for k in weights[0]:
        assert np.allclose(weights[0][k], weights[1][k], rtol=1e-4, atol=1e-6), k


def test_micro_batch_is_a_divisor_of_the_batch():
    assert [DPOSettings(batch_size=b, micro_batch=m).per_pass for b, m in [(8, 2), (6, 4), (3, 2), (8, 0), (2, 8), (1, 2)]] \
        == [2, 3, 1, 8, 2, 1]
    with pytest.raises(Exception, match="dpo.micro_batch"):
        DPOSettings(micro_batch=-1)


def test_evaluate_recomputes_its_file_without_resume(tiny_dir, tmp_path, caplog):
    """An evaluation file with the same problem ids is reused when resuming; with resume=False it is discarded,
    recomputed from the model, and one line says so."""
    import json
    import logging

    from lmlab.selfimprove.loop import evaluate

    lm, items, path = _lm(tiny_dir), ITEMS[:3], tmp_path / "eval.json"
    stale = [{"id": it.id, "malformed": False, "correct": True, "response_chars": 5, "thought_chars": 0,
              "output": "stale"} for it in items]
    path.write_text(json.dumps(stale))
    assert evaluate(lm, items, CFG.thought, 4, path) == stale
    with caplog.at_level(logging.WARNING, logger="lmlab.cache"):
        rows = evaluate(lm, items, CFG.thought, 4, path, resume=False)
    assert [r["id"] for r in rows] == [it.id for it in items] and all(r["output"] != "stale" for r in rows)
    assert json.loads(path.read_text()) == rows
    lines = [r.getMessage() for r in caplog.records if "resume=False" in r.getMessage()]
    assert len(lines) == 1 and str(path) in lines[0] and "\n" not in lines[0]
