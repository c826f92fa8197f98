"""Agreement of the low-precision inference paths with float32 on the embedded SmolLM2-135M-Instruct.

For each of the 1,000 committed prompts (benchmarks/data/agreement_prompts.jsonl, formatted with the
chat template), the next-token distribution after the prompt from each path of lmlab.lm.engine is
compared with the float32 reference (HFLM.next_token_logits, today's path):

  top1_agreement   fraction of prompts whose arg-max next token equals float32's
  mean_kl_nats     mean KL(P_float32 || P_path) over prompts, natural log
  max_kl_nats      the worst prompt

With --llamacpp N, llama.cpp (llama-cpp-python, the GGUF as stored) is compared on the first N prompts
too, from the same token ids.

    heavy python benchmarks/lm_agreement.py --threads 1 [--limit 1000] [--llamacpp 200] [--out runs/agreement.json]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROMPTS = HERE / "data" / "agreement_prompts.jsonl"
PATHS = ("int8", "bfloat16", "float32", "int8-dynamic")
# prompts per path, an evenly spaced subset of the 1,000 (0 = all): on a CPU without native bfloat16
# (AVX2 only) the bfloat16 and int8 paths prefill 3-5x slower than float32, so the paths that are not
# candidates for use (float32 through the engine: a consistency check; int8-dynamic: far off) get fewer
DEFAULT_SUBSET = {"float32": 100, "bfloat16": 100, "int8": 0, "int8-dynamic": 100}


def compare(ref, got):  # noqa: ANN001, ANN201
    import torch

    logp_ref = torch.log_softmax(ref.float(), -1)
    logp = torch.log_softmax(got.float(), -1)
    kl = (logp_ref.exp() * (logp_ref - logp)).sum(-1)
    return {"n": len(ref), "top1_agreement": round(float((ref.argmax(-1) == got.argmax(-1)).float().mean()), 4),
            "mean_kl_nats": round(float(kl.mean()), 6), "max_kl_nats": round(float(kl.max()), 5)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--limit", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--llamacpp", type=int, default=0, help="also compare llama.cpp on this many prompts")
    ap.add_argument("--all", action="store_true", help="every path on every prompt (no subsets)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()

    import torch
    from tqdm import tqdm

    from lmlab.io import atomic_write_text
    from lmlab.lm import load_lm

    torch.set_num_threads(args.threads)
    rows = [json.loads(line) for line in PROMPTS.read_text().splitlines()][:args.limit]
    lm = load_lm("default")
    seqs = [lm.encode(lm.chat_prompt(r["text"])) for r in rows]
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))  # similar lengths together: less padding
    batches = [order[i:i + args.batch] for i in range(0, len(order), args.batch)]
    started = time.perf_counter()

    def logits_of(fn, desc, subset=None):  # noqa: ANN001, ANN202
        out = torch.empty(len(seqs), len(lm.tokenizer))
        keep = set(range(len(seqs))) if subset is None else set(subset)
        t = time.perf_counter()
        for b in tqdm(batches, desc=desc, unit="batch", leave=False):
            b = [i for i in b if i in keep]
            if b:
                out[b] = fn([seqs[i] for i in b])
        return out, time.perf_counter() - t

    ref, ref_s = logits_of(lambda s: lm.forward_ids(s, last_only=True)[0][:, -1], "float32 (HF)")
    result = {"model": "SmolLM2-135M-Instruct (Q4_1 GGUF; float32 = its de-quantized weights)",
              "prompts": str(PROMPTS.relative_to(HERE.parent)), "n_prompts": len(seqs), "threads": args.threads,
              "mean_prompt_tokens": round(sum(map(len, seqs)) / len(seqs), 1),
              "load_average_before": round(os.getloadavg()[0], 2), "reference_seconds": round(ref_s, 1), "paths": {}}
    for p in PATHS:
        eng = lm.engine(p)
        n = 0 if args.all else DEFAULT_SUBSET[p]
        subset = list(range(len(seqs))) if not n or n >= len(seqs) else \
            [round(i * len(seqs) / n) for i in range(n)]
        got, secs = logits_of(eng.logits, p, subset)
        result["paths"][p] = dict(compare(ref[subset], got[subset]), seconds=round(secs, 1))
        print(p, result["paths"][p], flush=True)
        if args.out:  # partial results survive an interrupted run
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(Path(args.out), json.dumps(result, indent=2) + "\n")
    if args.llamacpp:
        from lmlab.lm.llamacpp import load_llamacpp

        llm = load_llamacpp(n_threads=args.threads)
        if llm is None:
            result["llamacpp"] = {"skipped": "llama-cpp-python is not installed"}
        else:
            n = min(args.llamacpp, len(seqs))
            got = torch.empty(n, len(lm.tokenizer))
            t = time.perf_counter()
            for i in tqdm(range(n), desc="llama.cpp", leave=False):
                got[i] = torch.from_numpy(llm.last_logits(seqs[i])[:len(lm.tokenizer)])
            result["llamacpp"] = dict(compare(ref[:n], got), seconds=round(time.perf_counter() - t, 1))
            print("llama.cpp", result["llamacpp"], flush=True)
    result["total_seconds"] = round(time.perf_counter() - started, 1)
    result["load_average_after"] = round(os.getloadavg()[0], 2)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(Path(args.out), text + "\n")


if __name__ == "__main__":
    main()
