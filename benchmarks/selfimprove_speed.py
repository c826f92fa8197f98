"""Speed of one self-improvement iteration's parts on CPU for the embedded SmolLM2-135M-Instruct: sampling
(K outputs per prompt at temperature 0.8 / top-p 0.95) three ways on the same prompts -- the loop's own path
(``lmlab.selfimprove.generation``: the engine's continuous batching, one seed per row), the engine's static
batches (``lm.generate``, what the loop used before), and transformers' ``generate`` (the peer, on the first
``--peer-prompts`` prompts) -- then DPO steps through TRL's ``DPOTrainer`` (full fine-tuning, float32; random batches as the quick configs use,
and batches grouped by length), and peak
resident memory; and (stage ``judge_reuse``) Meta-Rewarding-shaped judging -- the rubric judge's prompts over bundled
HH-RLHF responses, N identical prompts per response, sampled -- with the queue's prompt KV reuse off and on, same
rows and seeds. Prints JSON (and writes --out) with a projection of one ``--quick`` TPO iteration: 48 prompts x
K=4 sampled, DPO on up to 48 pairs (6 steps of 8), the validation decode of 2 DPO snapshots on 32 problems; and,
separately, the two held-out evaluations of 100 problems.

    heavy --exclusive python benchmarks/selfimprove_speed.py --threads 1
    heavy python benchmarks/selfimprove_speed.py --threads 1 --stages judge_reuse --merge   # judging only
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--peer-prompts", type=int, default=4)
    ap.add_argument("--slots", type=int, default=32, help="lm.batch_size: static batch / continuous-batching slots")
    ap.add_argument("--K", type=int, default=4)
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--dpo-steps", type=int, default=2)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--dpo-lr", type=float, default=1e-6)
    ap.add_argument("--stages", default="static,hf,dpo,dpo_grouped_by_length",
                    help="what to time besides the loop's own sampling (always run: it makes the DPO pairs)")
    ap.add_argument("--judge-responses", type=int, default=8, help="judge_reuse: responses judged per arm")
    ap.add_argument("--judge-n", type=int, default=3, help="judge_reuse: judgments per response (identical prompts)")
    ap.add_argument("--judge-new-tokens", type=int, default=96)
    ap.add_argument("--meta-responses", type=int, default=4, help="meta_judge_reuse: responses whose battles are timed")
    ap.add_argument("--merge", action="store_true", help="add to the results already in --out")
    ap.add_argument("--model", default="default")
    ap.add_argument("--out", default="benchmarks/results/selfimprove_speed.json")
    a = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    torch.set_num_threads(a.threads)
    from lmlab.io import atomic_write_text
    from lmlab.lm import load_lm
    from lmlab.selfimprove.dpo import DPOSettings, run_dpo
    from lmlab.selfimprove.generation import generate_rows
    from lmlab.selfimprove.loop import model_input, problem_items
    from lmlab.train.loop import TrainConfig

    lm = load_lm(a.model, needs=("trainable",), batch_size=a.slots)
    items = problem_items(a.prompts, seed=123)
    prompts = [model_input(lm, it.instruction, "none") for it in items]
    rows = [p for p in prompts for _ in range(a.K)]
    tok = lm.hf_tokenizer

    def sample(how: str, rows: list[str]) -> dict:
        t = time.perf_counter()
        if how == "continuous":
            texts = generate_rows(lm, rows, a.new_tokens, temperature=0.8, top_p=0.95, seed=0)
        else:
            lm.generate_with = "engine" if how == "static" else "hf"
            texts = lm.generate(rows, max_new_tokens=a.new_tokens, temperature=0.8, top_p=0.95, seed=0)
            lm.generate_with = "engine"
        dt = time.perf_counter() - t
        n_tok = sum(len(tok(x, add_special_tokens=False)["input_ids"]) for x in texts)
        return {"rows": len(rows), "seconds": round(dt, 2), "samples_per_s": round(len(rows) / dt, 3),
                "tokens_per_s": round(n_tok / dt, 1), "new_tokens": n_tok, "texts": texts}

    def save(res: dict) -> None:  # after each stage, so a run cut short still leaves its numbers
        if a.out:
            Path(a.out).parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(a.out, json.dumps(res, indent=2))

    stages = set(a.stages.split(","))
    res: dict = json.loads(Path(a.out).read_text()) if a.merge and Path(a.out).exists() else {}
    run = {"model": a.model, "threads": a.threads, "slots": a.slots, "max_new_tokens": a.new_tokens, "K": a.K,
           "stages": sorted(stages), "load_before": os.getloadavg()}
    res.setdefault("runs", []).append(run)

    def put(key: str, value: dict) -> None:  # a stage measured again in a merged run keeps both
        name = key if key not in res else f"{key}_run{len(res['runs'])}"
        while name in res:  # a stage run twice in one run (e.g. --stages dpo,dpo_precompute_ref,dpo)
            name += "_again"
        res[name] = value
        save(res)

    if "judge_reuse" in stages:
        put("judge_reuse", judge_reuse(lm, a))
    if "meta_judge_reuse" in stages:
        put("meta_judge_reuse", meta_judge_reuse(lm, a))
    if not stages & {"sampling", "static", "hf", "dpo", "dpo_grouped_by_length", "dpo_precompute_ref"}:
        run["peak_rss_gb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)
        run["load_after"] = os.getloadavg()
        print(json.dumps(res, indent=2))
        save(res)
        return
    cont = sample("continuous", rows)  # its samples make the DPO pairs
    texts = cont.pop("texts")
    put("sampling_continuous", cont)
    if "static" in stages:
        static = sample("static", rows)
        static.pop("texts")
        put("sampling_static", static)
        res["ratio_continuous_over_static_samples_per_s"] = round(cont["samples_per_s"] / static["samples_per_s"], 2)
    if "hf" in stages:
        peer = sample("hf", rows[:a.peer_prompts * a.K])
        peer.pop("texts")
        put("sampling_hf_generate", peer)
        res["ratio_continuous_over_hf_samples_per_s"] = round(cont["samples_per_s"] / peer["samples_per_s"], 2)
    pairs = [{"prompt": prompts[i // a.K], "chosen": texts[i] or "x", "rejected": texts[i + 1] or "y"}
             for i in range(0, len(texts) - 1, 2)]
    pairs = (pairs * (a.dpo_steps * a.batch // max(1, len(pairs)) + 1))[:a.dpo_steps * a.batch]
    dpo_keys, dpo_logs = {}, {}
    start_weights = {k: v.clone() for k, v in lm.hf_model.state_dict().items()}  # every DPO stage starts from M_0
    dpo_stages = {"dpo": (False, False), "dpo_grouped_by_length": (True, False), "dpo_precompute_ref": (False, True)}
    for key in [s for s in a.stages.split(",") if s in dpo_stages]:  # in the order given
        grouped, pre = dpo_stages[key]
        lm.hf_model.load_state_dict(start_weights)
        with tempfile.TemporaryDirectory() as tmp:
            d = run_dpo(lm, pairs, DPOSettings(batch_size=a.batch, group_by_length=grouped, precompute_ref=pre),
                        TrainConfig(lr=a.dpo_lr, steps=a.dpo_steps, seed=0), tmp)
        train_s = d["seconds"] - d["init_seconds"]
        put(key, {"steps": d["steps"], "seconds": d["seconds"], "steps_per_s": round(d["steps"] / d["seconds"], 4),
                  "batch": a.batch, "pairs_per_s": round(d["steps"] * a.batch / d["seconds"], 3),
                  "init_seconds": d["init_seconds"], "train_seconds_per_step": round(train_s / d["steps"], 2),
                  "log": d["log"], "rss_gb_after": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)})
        dpo_keys[key] = d["steps"] / d["seconds"]
        dpo_logs[key] = (d["log"], train_s / d["steps"], d["init_seconds"])
    if "dpo" in dpo_keys and "dpo_grouped_by_length" in dpo_keys:  # both in this run, on the same pairs
        res["ratio_grouped_over_random_dpo_steps_per_s"] = round(dpo_keys["dpo_grouped_by_length"] / dpo_keys["dpo"], 2)
    if "dpo" in dpo_logs and "dpo_precompute_ref" in dpo_logs:  # same pairs, order, seed and start weights
        (la, sa, ia), (lb, sb, ib) = dpo_logs["dpo"], dpo_logs["dpo_precompute_ref"]
        # with a stage listed twice, the comparison uses its last run (the first one warms the process up)
        cmp = {"order": [k for k in a.stages.split(",") if k in ("dpo", "dpo_precompute_ref")],
               "ratio_dpo_steps_per_s": round(dpo_keys["dpo_precompute_ref"] / dpo_keys["dpo"], 2),
               "ratio_train_step": round(sa / sb, 2),
               "max_abs_diff": {k: max(abs(x[k] - y[k]) for x, y in zip(la, lb))
                                for k in ("loss", "rewards/margins", "logps/chosen", "logps/rejected")
                                if all(k in x for x in la + lb)}}
        # the reference pass moves into the trainer's construction: its cost per batch of pairs
        ref_s = max(0.0, ib - ia) / len(lb)
        cmp["reference_pass_s_per_batch"] = round(ref_s, 2)
        for epochs in (1, 10):  # 6 steps per epoch (48 pairs, batch 8); 10 epochs: the paper's and the full config's
            old, new = 6 * epochs * sa, 6 * epochs * sb + 6 * ref_s
            cmp[f"projected_dpo_48_pairs_{epochs}_epochs_s"] = {"per_step_ref": round(old, 1),
                                                               "precompute_ref": round(new, 1),
                                                               "ratio": round(old / new, 2)}
        put("precompute_ref_comparison", cmp)
    run["peak_rss_gb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)
    run["load_after"] = os.getloadavg()
    if "dpo" in res and "sampling_continuous" in res:
        sps, steps_per_s = res["sampling_continuous"]["samples_per_s"], res["dpo"]["steps_per_s"]
        parts = {"sampling_192_rows": 48 * 4 / sps, "dpo_6_steps": 6 / steps_per_s,
                 "validation_2x32_greedy": 2 * 32 / sps}
        res["projected_quick_iteration_s"] = {k: round(v, 1) for k, v in parts.items()}
        res["projected_quick_iteration_minutes"] = round(sum(parts.values()) / 60, 1)
        res["projected_heldout_evals_2x100_minutes"] = round(2 * 100 / sps / 60, 1)
        res["goal_quick_iteration_under_10_min"] = sum(parts.values()) < 600
        if "ratio_grouped_over_random_dpo_steps_per_s" in res:
            g = dict(parts, dpo_6_steps=parts["dpo_6_steps"] / res["ratio_grouped_over_random_dpo_steps_per_s"])
            res["projected_quick_iteration_minutes_dpo_grouped_by_length"] = round(sum(g.values()) / 60, 1)
        res["note"] = ("projection: the first run's sampled-row rate of the loop's path (also used for greedy rows, "
                       "which end sooner) and DPO rate at batch 8 (random batches, as the quick configs use); the "
                       "verifiable judge costs nothing")
    print(json.dumps(res, indent=2))
    save(res)

def judge_prompts(lm, a, n_responses: int) -> tuple[list, list[str]]:
    """The rubric judge's prompts over the first bundled HH-RLHF responses, and the pairs they come from."""
    from lmlab.selfimprove.agreement import hh_pairs
    from lmlab.selfimprove.prompts import JUDGE_TEMPLATE

    ds = hh_pairs(n_responses, seed=0)
    pairs = [(p.strip(), r) for p, r in zip(ds.prompt, ds.response_1)]
    return pairs, [lm.chat_prompt(JUDGE_TEMPLATE.format(instruction=p, response=r)) for p, r in pairs]


def reuse_arms(lm, rows: list[str], new_tokens: int, temperature: float) -> tuple[dict, dict]:
    """``rows`` decoded with the queue's prompt KV reuse off, on, and off again, same per-row seeds (after a
    short warm-up decode): the load drifts and a process's first large run is slower, so the faster off arm
    is compared. Returns the report and the texts per arm."""
    from lmlab.selfimprove.generation import generate_rows, row_seeds

    seeds = row_seeds(0, len(rows))
    n_prompt = [len(lm.encode(p)) for p in dict.fromkeys(rows)]
    generate_rows(lm, rows[:2], 4, temperature=temperature, top_p=1.0, seeds=seeds[:2])
    arms, texts = {}, {}
    for name, on in (("reuse_off", False), ("reuse_on", True), ("reuse_off_again", False)):
        stats: dict = {}
        t = time.perf_counter()
        texts[name] = generate_rows(lm, rows, new_tokens, temperature=temperature, top_p=1.0, seeds=seeds,
                                    kv_reuse=on, stats=stats)
        dt = time.perf_counter() - t
        arms[name] = {"seconds": round(dt, 2), "judgments_per_s": round(len(rows) / dt, 3),
                      "prefill_tokens_computed": stats["prefill_tokens"],
                      "prefill_tokens_reused": stats["prefill_tokens_reused"], "decode_steps": stats["steps"],
                      "generated_tokens": stats["tokens"]}
    on_rate = arms["reuse_on"]["judgments_per_s"]
    off_rate = max(arms["reuse_off"]["judgments_per_s"], arms["reuse_off_again"]["judgments_per_s"])
    return {"rows": len(rows), "unique_prompts": len(n_prompt), "max_new_tokens": new_tokens,
            "temperature": temperature,
            "prompt_tokens_min_mean_max": [min(n_prompt), round(sum(n_prompt) / len(n_prompt)), max(n_prompt)],
            **arms, "ratio_judgments_per_s_on_over_off": round(on_rate / off_rate, 2),
            "ratio_vs_each_off_arm": [round(on_rate / arms[k]["judgments_per_s"], 2)
                                      for k in ("reuse_off", "reuse_off_again")],
            "rows_with_identical_text": sum(x == y for x, y in zip(texts["reuse_off"], texts["reuse_on"])),
            "off_arms_identical_text": sum(x == y for x, y in zip(texts["reuse_off"], texts["reuse_off_again"])),
            "note": "1 thread on a shared machine; the ratio is the result. Texts can differ where float rounding "
                    "of the prefill (batch composition, copied vs recomputed keys) flips a token"}, texts


def judge_reuse(lm, a) -> dict:
    """Self-judging rows: N identical rubric-judge prompts per bundled HH-RLHF response, temperature 0.8."""
    _, prompts = judge_prompts(lm, a, a.judge_responses)
    rep, _ = reuse_arms(lm, [p for p in prompts for _ in range(a.judge_n)], a.judge_new_tokens, 0.8)
    return {"responses": len(prompts), "n_per_response": a.judge_n, "slots": a.slots, **rep}


def meta_judge_reuse(lm, a) -> dict:
    """Meta-judge rows: every ordered battle of a response's N judgments (made first, with reuse on, untimed),
    greedy; no two prompts are equal, so only the shared head (chat header, instructions, rubric) is reused."""
    from lmlab.selfimprove.generation import generate_rows
    from lmlab.selfimprove.meta import battle_prompts

    pairs, prompts = judge_prompts(lm, a, a.meta_responses)
    judged = generate_rows(lm, [p for p in prompts for _ in range(a.judge_n)], a.judge_new_tokens, 0.8, seed=0)
    rows = []
    for i, (ins, resp) in enumerate(pairs):
        rows += battle_prompts(lm, ins, resp, judged[i * a.judge_n:(i + 1) * a.judge_n])[1]
    rep, _ = reuse_arms(lm, rows, a.judge_new_tokens, 0.0)
    return {"responses": len(pairs), "battles_per_response": len(rows) // max(1, len(pairs)), "slots": a.slots, **rep}


if __name__ == "__main__":
    main()
