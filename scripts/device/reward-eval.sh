#!/usr/bin/env bash
# reward-eval, the full default config (50 problems x K 16 responses of <= 40 tokens, 256 HH pairs), SmolLM2-135M.
# Estimate (UNMEASURED): 800 sampled responses / batch 8 x 40 decode steps x ~15 ms = ~60 s; judge and implicit
# scoring of 800 responses + 2 x 256 HH pairs, prefill-bound, ~2 x 135M x ~1M tokens = 3e14 FLOP (seconds) but
# ~15 ms per batch of 8 -> ~1-2 min; model de-quantization ~40 s. 3-5 min.
# The model: the GGUF (98 MB) cannot travel in one call (64 MiB): an earlier call stages part aa (stage.sh), this
# call carries part ab and the gguf wheel (scripts/device/README.md, "LLM studies"). Untested on a GPU.
source "$(dirname "$0")/_common.sh"
preflight transformers gguf
model=$(smollm2_gguf)
run_study reward-eval --model "$model"
