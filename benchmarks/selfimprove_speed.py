"""Speed of one self-improvement iteration's parts on CPU for the embedded SmolLM2-135M-Instruct: sampling
(K outputs per prompt at temperature 0.8 / top-p 0.95 through lmlab's batched engine, and transformers'
``generate`` as the peer on the same prompts), DPO steps through TRL's ``DPOTrainer`` (full fine-tuning, float32),
and peak resident memory. Prints JSON (and writes --out) with a projection of one ``--quick`` iteration
(48 prompts x K=4 sampled, DPO on up to 48 pairs, 100 + 32 held-out problems decoded greedily).

    heavy --exclusive python benchmarks/selfimprove_speed.py --threads 1 --out runs/selfimprove_speed.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--K", type=int, default=4)
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--dpo-steps", type=int, default=3)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--no-peer", action="store_true", help="skip transformers' generate (the peer)")
    ap.add_argument("--model", default="default")
    ap.add_argument("--out", default="")
    a = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    torch.set_num_threads(a.threads)
    from lmlab.lm import load_lm
    from lmlab.selfimprove.dpo import DPOSettings, run_dpo
    from lmlab.selfimprove.loop import model_input, problem_items
    from lmlab.train.loop import TrainConfig

    lm = load_lm(a.model, needs=("trainable",), batch_size=a.prompts * a.K)
    items = problem_items(a.prompts, seed=123)
    prompts = [model_input(lm, it.instruction, "none") for it in items]
    rows = [p for p in prompts for _ in range(a.K)]
    tok = lm.hf_tokenizer

    def sample(with_: str) -> dict:
        lm.generate_with = with_
        t = time.perf_counter()
        texts = lm.generate(rows, max_new_tokens=a.new_tokens, temperature=0.8, top_p=0.95, seed=0)
        dt = time.perf_counter() - t
        n_tok = sum(len(tok(x, add_special_tokens=False)["input_ids"]) for x in texts)
        return {"seconds": round(dt, 2), "samples_per_s": round(len(rows) / dt, 3), "tokens_per_s": round(n_tok / dt, 1),
                "new_tokens": n_tok, "texts": texts}

    res: dict = {"model": a.model, "threads": a.threads, "rows": len(rows), "max_new_tokens": a.new_tokens,
                 "load_before": os.getloadavg()}
    eng = sample("engine")
    texts = eng.pop("texts")
    res["sampling_engine"] = eng
    if not a.no_peer:
        peer = sample("hf")
        peer.pop("texts")
        res["sampling_hf_generate"] = peer
        res["ratio_engine_over_hf_samples_per_s"] = round(eng["samples_per_s"] / peer["samples_per_s"], 2)
    lm.generate_with = "engine"
    pairs = [{"prompt": prompts[i // a.K], "chosen": texts[i] or "x", "rejected": texts[i + 1] or "y"}
             for i in range(0, len(texts) - 1, 2)]
    pairs = (pairs * (a.dpo_steps * a.batch // max(1, len(pairs)) + 1))[:a.dpo_steps * a.batch]
    out = Path(a.out).parent if a.out else Path("/tmp")
    d = run_dpo(lm, pairs, DPOSettings(batch_size=a.batch), TrainConfig(lr=1e-6, steps=a.dpo_steps, seed=0), out / "bench-dpo")
    res["dpo"] = {"steps": d["steps"], "seconds": d["seconds"], "steps_per_s": round(d["steps"] / d["seconds"], 4),
                  "batch": a.batch, "pairs_per_s": round(d["steps"] * a.batch / d["seconds"], 3)}
    res["peak_rss_gb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)
    sps = eng["samples_per_s"]
    greedy_rows = 132
    proj = 48 * 4 / sps + greedy_rows * 2 / sps + (48 / a.batch) / res["dpo"]["steps_per_s"]
    res["projected_quick_iteration_minutes"] = round(proj / 60, 1)
    res["goal_quick_iteration_under_10_min"] = proj < 600
    res["load_after"] = os.getloadavg()
    s = json.dumps(res, indent=2)
    print(s)
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(s)


if __name__ == "__main__":
    main()
