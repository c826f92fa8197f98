"""Throughput of the default pretrained LM (SmolLM2-135M-Instruct, embedded GGUF) on CPU.

Measures, each in a fresh subprocess where load time matters:
  load_cold_s        GGUF -> de-quantized float32 model (cache emptied first; includes writing the cache)
  load_warm_s        from the safetensors cache
  prefill_tok_s      tokens/s of one forward pass over prompts of --prompt-len tokens, batch 1 and 8
  generate_tok_s     new tokens/s of greedy generation (--new-tokens), batch 1 and 8 (KV cache on)

Prints one JSON object, with the machine's load average before and after: on a shared machine,
other jobs' threads oversubscribe the cores and every number drops (by 4x in our measurements).

    python benchmarks/lm_throughput.py [--prompt-len 128] [--new-tokens 32] [--repeats 3] [--skip-cold]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

LOAD = "import time, sys; t = time.perf_counter(); from lmlab.lm import load_lm; lm = load_lm('default'); " \
       "print(lm.load_info['source'], time.perf_counter() - t)"


def load_time(env: dict[str, str]) -> dict[str, float | str]:
    out = subprocess.run([sys.executable, "-c", LOAD], env=env, capture_output=True, text=True, check=True)
    source, seconds = out.stdout.split()[-2:]
    return {"source": source, "seconds": round(float(seconds), 2)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--prompt-len", type=int, default=128)
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--skip-cold", action="store_true", help="do not measure the cold load (about a minute)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = ap.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)

    result: dict = {"model": "SmolLM2-135M-Instruct (Q4_1 GGUF, de-quantized to float32)", "device": "cpu",
                    "torch_threads": torch.get_num_threads(), "platform": platform.platform(),
                    # other jobs on a shared machine change every number here: the 1-minute load average
                    "load_average_before": round(os.getloadavg()[0], 2), "cpu_count": os.cpu_count(),
                    "prompt_len": args.prompt_len, "new_tokens": args.new_tokens, "repeats": args.repeats}
    env = dict(os.environ)
    if not args.skip_cold:
        with tempfile.TemporaryDirectory() as tmp:
            cold_env = dict(env, LMLAB_CACHE=tmp)
            result["load_cold"] = load_time(cold_env)
            result["load_warm"] = load_time(cold_env)
    else:
        load_time(env)  # make sure the user cache exists
        result["load_warm"] = load_time(env)

    from lmlab.lm import load_lm

    lm = load_lm("default")
    g = torch.Generator().manual_seed(0)
    for batch in (1, 8):
        seqs = torch.randint(200, 40_000, (batch, args.prompt_len), generator=g).tolist()
        lm.forward_ids(seqs, last_only=True)  # warm-up
        times = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            lm.forward_ids(seqs, last_only=True)
            times.append(time.perf_counter() - t)
        result[f"prefill_tok_s_batch{batch}"] = round(batch * args.prompt_len / statistics.median(times), 1)

        prompts = [lm.tokenizer.decode(s[:32]) for s in seqs]
        lm.batch_size = batch
        gen_times = []
        for _ in range(args.repeats):
            ids, mask, _ = lm.pad_left([lm.encode(p) for p in prompts])
            t = time.perf_counter()
            with torch.no_grad():
                out = lm.model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=args.new_tokens,
                                        min_new_tokens=args.new_tokens, do_sample=False, pad_token_id=lm.pad_id)
            gen_times.append(time.perf_counter() - t)
            assert out.shape[1] - ids.shape[1] == args.new_tokens
        result[f"generate_tok_s_batch{batch}"] = round(batch * args.new_tokens / statistics.median(gen_times), 1)
    result["load_average_after"] = round(os.getloadavg()[0], 2)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
