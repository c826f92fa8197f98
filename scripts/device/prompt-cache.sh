#!/usr/bin/env bash
# prompt-cache, the full default config (6,000 train / 3,000 test pairs, 3,000-query stream, 600 distillation steps
# per loss, GPTCache grid 8), all-MiniLM-L6-v2 fine-tuned on CUDA.
# Estimate (UNMEASURED): 1,200 MiniLM steps (22M params, batch of pairs <= 64 x 2 x ~32 tokens: ~6 x 22M x 4k =
# 5e11 FLOP, launch-bound ~30 ms/step) -> ~40 s; embedding ~20k texts several times -> ~30 s; the simulations and
# GPTCache (faiss, sqlite: CPU) were ~5 of the 11 quick minutes on CPU, x ~2.5 -> ~4-6 min here, CPU-bound. 5-8 min.
# The model: MiniLM as float16 (45 MB) is staged by an earlier call (stage.sh); this call carries the wheels
# gptcache, faiss-cpu, sqlalchemy (~25 MB), which do not fit beside it (scripts/device/README.md). Untested on a GPU.
source "$(dirname "$0")/_common.sh"
preflight sentence_transformers gptcache faiss sqlalchemy
minilm=$(minilm_dir)
run_study prompt-cache --set "embedder=\"$minilm\""
