#!/usr/bin/env bash
# embedllm, the full default config (84-model zoo, 5,000 questions, question_features "tokens": no embedder needed).
# Estimate (UNMEASURED): the zoo is 120k training steps of small models (widths <= 64) that are launch-bound on a
# GPU, ~3 ms/step -> ~360 s if trained one after another; the routers (7 fits of ~8k steps) ~60-150 s more. 7-9 min:
# may pass the 480 s limit; the run keeps checkpoints under runs/device/embedllm, so rerun the same call at once.
# Carry: nothing. Untested on a GPU.
source "$(dirname "$0")/_common.sh"
preflight
run_study embedllm
