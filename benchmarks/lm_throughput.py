"""Inference throughput of the embedded SmolLM2-135M-Instruct (GGUF) on CPU: every lmlab path and llama.cpp
on the same file with the same threads, side by side in one run.

Paths (each measured in its own subprocess, so peak memory is the path's own):
  hf-float32       the reference: transformers' forward / generate on the de-quantized float32 weights
  engine-float32   lmlab.lm.engine, float32 (greedy outputs identical to the reference)
  engine-int8      lmlab.lm.engine, int8 weight-only, bfloat16 activations
  engine-bfloat16  lmlab.lm.engine, bfloat16 weights and activations
  llamacpp         llama-cpp-python on the GGUF as stored (batch 1), when installed
  llama-batched-bench  llama.cpp's own batched benchmark (batch 1, 8, 32), when built
                   (scripts/build_llama_batched_bench.sh; path from --batched-bench or the lmlab cache)

Per path: prefill tokens/s (one --prompt-len prompt, batch 1), time to first token (same prompt:
prefill + choosing the token), decode tokens/s at batch 1, 8 and 32 (greedy, --new-tokens each, EOS
ignored; prompts of 32 tokens; the batch's prefill time subtracted, as llama-batched-bench's speed_tg
does; generate_bN_tok_s keeps it in), peak resident memory (ru_maxrss). Recorded with them: CPU flags (bfloat16
and int8 speed depend on AVX-512/AMX/VNNI) and the load average before and after each path. JSON on stdout
(and --out), with a top-level ``ratios`` object.

    heavy --exclusive python benchmarks/lm_throughput.py --threads 2 --out runs/lm_throughput.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

LMLAB_PATHS = ("hf-float32", "engine-float32", "engine-int8", "engine-bfloat16")
BATCHES = (1, 8, 32)
DECODE_PROMPT = 32


def cpu_flags() -> dict:
    flags: list[str] = []
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags") and not flags:
                flags = line.split(":", 1)[1].split()
            if line.startswith("model name") and not model:
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    keep = sorted(f for f in flags if f.startswith(("avx", "amx")) or f in ("fma", "f16c", "sse4_2"))
    import torch

    return {"cpu": model, "flags": keep, "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "bf16_native": any(f in flags for f in ("avx512_bf16", "amx_bf16")),
            "int8_vnni": any(f in flags for f in ("avx512_vnni", "avx_vnni", "amx_int8"))}


def _median_time(fn, repeats: int) -> float:  # noqa: ANN001
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _prompts(n: int, length: int, seed: int) -> list[list[int]]:
    import torch

    g = torch.Generator().manual_seed(seed)
    return torch.randint(200, 40_000, (n, length), generator=g).tolist()


# -- workers (one per subprocess) ---------------------------------------------------------------------------
def worker_lmlab(path: str, args: argparse.Namespace) -> dict:
    import torch

    from lmlab.lm import load_lm

    lm = load_lm("default")
    out: dict = {}
    prompt = _prompts(1, args.prompt_len, 0)
    if path == "hf-float32":
        def prefill():  # noqa: ANN202
            return lm.forward_ids(prompt, last_only=True)[0][:, -1]

        def first_token():  # noqa: ANN202
            return prefill().argmax(-1)

        def prefill_batch(seqs):  # noqa: ANN001, ANN202
            return lm.forward_ids(seqs, last_only=True)

        def decode(seqs):  # noqa: ANN001, ANN202
            ids, mask, _ = lm.pad_left(seqs)
            with torch.no_grad():
                o = lm.model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=args.new_tokens,
                                      min_new_tokens=args.new_tokens, do_sample=False, pad_token_id=lm.pad_id,
                                      temperature=None, top_p=None, top_k=None)
            assert o.shape[1] - ids.shape[1] == args.new_tokens
    else:
        eng = lm.engine(path.split("-", 1)[1])
        eng.eos_ids = []  # decode exactly --new-tokens

        def prefill():  # noqa: ANN202
            return eng.logits(prompt)

        def first_token():  # noqa: ANN202
            return eng.logits(prompt).argmax(-1)

        def prefill_batch(seqs):  # noqa: ANN001, ANN202
            return eng.logits(seqs)

        def decode(seqs):  # noqa: ANN001, ANN202
            o = eng.generate_ids(seqs, max_new_tokens=args.new_tokens)
            assert all(len(r) == args.new_tokens for r in o)
    prefill()  # warm-up (and, for the low-precision paths, converting the weights)
    out["prefill_tok_s"] = round(args.prompt_len / _median_time(prefill, args.repeats), 1)
    out["ttft_s"] = round(_median_time(first_token, args.repeats), 4)
    for b in BATCHES:
        seqs = _prompts(b, DECODE_PROMPT, b)
        if b == 1:
            decode(_prompts(1, DECODE_PROMPT, 7))  # warm-up
        reps = args.repeats if b < 32 else 1
        total = _median_time(lambda: decode(seqs), reps)
        pp = _median_time(lambda: prefill_batch(seqs), reps)
        # decoding only (what llama-batched-bench's speed_tg counts): the prefill gives the first new token,
        # the other new_tokens - 1 come from decoding steps
        out[f"decode_b{b}_tok_s"] = round(b * (args.new_tokens - 1) / max(1e-9, total - pp), 1)
        out[f"generate_b{b}_tok_s"] = round(b * args.new_tokens / total, 1)  # prefill included
    return out


def worker_llamacpp(args: argparse.Namespace) -> dict:
    import numpy as np

    from lmlab.lm.llamacpp import load_llamacpp

    llm = load_llamacpp(n_threads=args.threads, n_ctx=max(512, args.prompt_len + args.new_tokens + 8))
    if llm is None:
        return {"skipped": "llama-cpp-python is not installed (pip install -e '.[fast]')"}
    ll = llm.llama
    prompt = _prompts(1, args.prompt_len, 0)[0]

    def prefill():  # noqa: ANN202
        ll.reset()
        ll.eval(prompt)
        return ll.scores[ll.n_tokens - 1]

    def first_token():  # noqa: ANN202
        return int(np.argmax(prefill()))

    def decode():  # noqa: ANN202
        ll.reset()
        ll.eval(_prompts(1, DECODE_PROMPT, 1)[0])
        for _ in range(args.new_tokens):
            ll.eval([int(np.argmax(ll.scores[ll.n_tokens - 1]))])

    prefill()
    out = {"prefill_tok_s": round(args.prompt_len / _median_time(prefill, args.repeats), 1),
           "ttft_s": round(_median_time(first_token, args.repeats), 4)}
    # decoding time only: subtract the 32-token prefill that decode() starts with
    pp = _median_time(lambda: (ll.reset(), ll.eval(_prompts(1, DECODE_PROMPT, 1)[0])), args.repeats)
    out["decode_b1_tok_s"] = round(args.new_tokens / max(1e-9, _median_time(decode, args.repeats) - pp), 1)
    out["llama_cpp_python"] = __import__("llama_cpp").__version__
    return out


def run_worker(name: str, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--worker", name, "--threads", str(args.threads), "--prompt-len",
           str(args.prompt_len), "--new-tokens", str(args.new_tokens), "--repeats", str(args.repeats)]
    before = round(os.getloadavg()[0], 2)
    t = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        return {"error": (p.stderr.strip().splitlines() or ["?"])[-1][:300], "load_average_before": before}
    res = json.loads(p.stdout.strip().splitlines()[-1])
    res.update(load_average_before=before, load_average_after=round(os.getloadavg()[0], 2),
               wall_s=round(time.perf_counter() - t, 1))
    return res


def batched_bench(binary: Path | None, args: argparse.Namespace, gguf: Path) -> dict:
    """llama.cpp's llama-batched-bench: -npl 1,8,32 sequences of --prompt-len + --new-tokens each."""
    if binary is None or not binary.exists():
        return {"skipped": "llama-batched-bench not built (scripts/build_llama_batched_bench.sh)"}
    n_ctx = max(BATCHES) * (DECODE_PROMPT + args.new_tokens) + 64
    cmd = [str(binary), "-m", str(gguf), "-c", str(n_ctx), "-b", "2048", "-ub", "512", "-t", str(args.threads),
           "-tb", str(args.threads), "-npp", str(DECODE_PROMPT), "-ntg", str(args.new_tokens),
           "-npl", ",".join(map(str, BATCHES)), "--output-format", "jsonl"]
    before = round(os.getloadavg()[0], 2)
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        return {"error": (p.stderr.strip().splitlines() or ["?"])[-1][:300], "cmd": " ".join(cmd)}
    rows = [json.loads(line) for line in p.stdout.splitlines() if line.startswith("{")]
    out: dict = {"cmd": " ".join(cmd), "load_average_before": before, "load_average_after": round(os.getloadavg()[0], 2)}
    for r in rows:
        out[f"decode_b{r['pl']}_tok_s"] = round(float(r["speed_tg"]), 1)
        out[f"prefill_b{r['pl']}_tok_s"] = round(float(r["speed_pp"]), 1)
    return out


def default_batched_bench() -> Path | None:
    try:
        import llama_cpp

        from lmlab.io import cache_root

        p = cache_root() / f"llama.cpp-{llama_cpp.__version__}" / "build" / "bin" / "llama-batched-bench"
        return p if p.exists() else None
    except Exception:  # noqa: BLE001 - not installed: no default
        return None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--prompt-len", type=int, default=128)
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2, help="torch and llama.cpp threads (the same for every path)")
    ap.add_argument("--paths", default=",".join(LMLAB_PATHS + ("llamacpp",)))
    ap.add_argument("--batched-bench", type=Path, default=None, help="llama-batched-bench binary")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    if args.worker:
        res = worker_llamacpp(args) if args.worker == "llamacpp" else worker_lmlab(args.worker, args)
        res["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
        print(json.dumps(res))
        return

    from lmlab.lm.gguf import default_gguf_path

    gguf = default_gguf_path()
    started = time.perf_counter()
    result: dict = {"model": f"SmolLM2-135M-Instruct ({gguf.name})", "threads": args.threads,
                    "prompt_len": args.prompt_len, "decode_prompt_len": DECODE_PROMPT, "new_tokens": args.new_tokens,
                    "repeats": args.repeats, "platform": platform.platform(), "cpu_count": os.cpu_count(),
                    "torch": torch.__version__, "cpu": cpu_flags(),
                    # other jobs on a shared machine change every number here
                    "load_average_before": round(os.getloadavg()[0], 2), "paths": {}}
    subprocess.run([sys.executable, "-c", "from lmlab.lm import load_lm; load_lm('default')"], check=True,
                   capture_output=True)  # the float32 cache exists before anything is timed
    for name in args.paths.split(","):
        result["paths"][name] = run_worker(name, args)
        print(name, json.dumps(result["paths"][name]), file=sys.stderr, flush=True)
    bb = args.batched_bench or default_batched_bench()
    result["paths"]["llama-batched-bench"] = batched_bench(bb, args, gguf)
    print("llama-batched-bench", json.dumps(result["paths"]["llama-batched-bench"]), file=sys.stderr, flush=True)
    result["load_average_after"] = round(os.getloadavg()[0], 2)
    result["wall_s"] = round(time.perf_counter() - started, 1)
    result["ratios"] = ratios(result["paths"])
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        from lmlab.io import atomic_write_text

        args.out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(args.out, text + "\n")


def ratios(paths: dict) -> dict:
    """lmlab's fastest PyTorch path against llama.cpp (batch 1: llama-cpp-python, falling back to
    llama-batched-bench; batch 32: llama-batched-bench), and the engine's float32 prefill against the reference."""
    torch_paths = {k: v for k, v in paths.items() if k in LMLAB_PATHS and "error" not in v}

    def best(key: str) -> tuple[str | None, float | None]:
        cands = [(v.get(key), k) for k, v in torch_paths.items() if v.get(key)]
        if not cands:
            return None, None
        val, name = max(cands)
        return name, val

    lc = paths.get("llamacpp", {})
    bb = paths.get("llama-batched-bench", {})
    b1_name, b1 = best("decode_b1_tok_s")
    b32_name, b32 = best("decode_b32_tok_s")
    ref_b1 = lc.get("decode_b1_tok_s") or bb.get("decode_b1_tok_s")
    ref_b32 = bb.get("decode_b32_tok_s")
    pre = paths.get("engine-float32", {}).get("prefill_tok_s")
    pre_ref = paths.get("hf-float32", {}).get("prefill_tok_s")
    return {"decode_b1_vs_llamacpp": round(b1 / ref_b1, 3) if b1 and ref_b1 else None,
            "decode_b32_vs_llamacpp": round(b32 / ref_b32, 3) if b32 and ref_b32 else None,
            "prefill_vs_fp32_reference": round(pre / pre_ref, 3) if pre and pre_ref else None,
            "decode_b1_path": b1_name, "decode_b32_path": b32_name,
            "llamacpp_b1_source": "llama-cpp-python" if lc.get("decode_b1_tok_s") else "llama-batched-bench",
            "llamacpp_b32_source": "llama-batched-bench" if ref_b32 else None}


if __name__ == "__main__":
    main()
