#!/usr/bin/env bash
# tokenization, the full default config (3 transformer sources, BPE 8/32/128/512, 512-character sequences, 4,000
# steps per model, probe included: 15 base + 6 probe models; the count-based part as in --quick).
# Estimate (UNMEASURED): 21 models x 4,000 steps = 84k steps of 1-2-layer models (d 8 / d 64, batch 32) that are
# launch-bound on a GPU, ~3-5 ms/step -> 250-420 s, + the count-based part and BPE training on the CPU
# (~1-2 min; 16 cores, --threads 8). 5-8 min: the tightest of the scripts. A run stopped at 480 s keeps its
# checkpoints in runs/device/tokenization (ignored, kept while the machine is warm): rerun the same call at once.
# Carry: nothing. Untested on a GPU.
source "$(dirname "$0")/_common.sh"
preflight
run_study tokenization
