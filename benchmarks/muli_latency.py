"""Latency and throughput of MULI detection on CPU vs a plain generation call (default SmolLM2-135M-Instruct).

Detection is one prefill per prompt (first-token logits, unembedding at the last position only) plus a
sparse dot product; the shared chat-template prefix's key/value cache is reused (as a server would).
A plain generation call is what the server does anyway: greedy decoding of --new-tokens tokens.

Prompts: --n prompts drawn from the bundled OpenAI moderation set (seeded), cut to --max-tokens
user tokens; texts are never printed. The detector is a MULI fitted on other prompts of the set
(its weights do not change the cost: one dot product over its non-zero tokens).

Prints one JSON object: detection latency per prompt at batch 1 (median, p90), detection
throughput (prompts/s) at batch 1 and --batch, the sparse-LR part alone, generation latency per
prompt at batch 1, and their ratio; with the machine's load average (other jobs change every number).

    python benchmarks/muli_latency.py [--n 32] [--batch 16] [--new-tokens 32] [--max-tokens 64] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=32, help="prompts timed")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--max-tokens", type=int, default=64, help="user tokens kept per prompt (as muli --quick)")
    ap.add_argument("--n-gen", type=int, default=8, help="prompts timed for generation (slow)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    from lmlab.lm import load_lm
    from lmlab.moderation.data import load_default
    from lmlab.moderation.features import FirstTokenFeatures, PromptTemplate
    from lmlab.moderation.muli import MULIDetector

    result: dict = {"model": "SmolLM2-135M-Instruct (Q4_1 GGUF, de-quantized to float32)", "device": "cpu",
                    "torch_threads": torch.get_num_threads(), "platform": platform.platform(),
                    "cpu_count": os.cpu_count(), "load_average_before": round(os.getloadavg()[0], 2),
                    "n": args.n, "batch": args.batch, "max_user_tokens": args.max_tokens, "new_tokens": args.new_tokens}
    lm = load_lm("default", batch_size=args.batch)
    data = load_default()
    rng = np.random.default_rng(0)
    pick = rng.choice(len(data), args.n + 64, replace=False)
    fit_texts = [data.texts[i] for i in pick[args.n:]]
    texts = [data.texts[i] for i in pick[:args.n]]
    tmpl = PromptTemplate(max_tokens=args.max_tokens)

    def feats(batch: int) -> FirstTokenFeatures:
        return FirstTokenFeatures(lm, tmpl, cache_dir=None, batch_size=batch)  # no disk cache: time the model

    det = MULIDetector(feats(args.batch), lam=1e-3).fit(fit_texts, data.labels[pick[args.n:]])
    result["muli_nonzero_weights"] = int(len(det.idx))
    prompts = [tmpl.format(lm, t) for t in texts]
    result["mean_prompt_tokens"] = round(float(np.mean([len(lm.encode(p)) for p in prompts])), 1)

    det.features = feats(1)
    det.decision_function(texts[:2])  # warm-up
    per = []
    for t in texts:
        t0 = time.perf_counter()
        det.decision_function([t])  # one prompt: a batch of one, no shared-prefix reuse (nothing to share)
        per.append(time.perf_counter() - t0)
    result["detect_latency_s_batch1"] = {"median": round(statistics.median(per), 4),
                                         "p90": round(float(np.percentile(per, 90)), 4)}
    result["detect_prompts_per_s_batch1"] = round(len(texts) / sum(per), 2)

    det.features = feats(args.batch)
    t0 = time.perf_counter()
    logits = det.features.logits(texts)
    dt = time.perf_counter() - t0
    result[f"detect_prompts_per_s_batch{args.batch}"] = round(len(texts) / dt, 2)
    t0 = time.perf_counter()
    for _ in range(20):
        det.decision_logits(logits)
    result["sparse_lr_s_per_prompt"] = (time.perf_counter() - t0) / 20 / len(texts)

    gen = []
    lm.generate(prompts[:1], max_new_tokens=2)  # warm-up
    for p in prompts[:args.n_gen]:
        t0 = time.perf_counter()
        lm.generate([p], max_new_tokens=args.new_tokens)
        gen.append(time.perf_counter() - t0)
    result["generate_latency_s_batch1"] = {"median": round(statistics.median(gen), 4), "n": len(gen)}
    result["generation_over_detection_latency"] = round(statistics.median(gen) / statistics.median(per), 1)
    result["load_average_after"] = round(os.getloadavg()[0], 2)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
