#!/usr/bin/env bash
# extreme-tokens at the PAPER's width, length and batch (d_model 256, sequences of 256, batch 512: the default config)
# with every variant's steps capped at 1,500 (`--set max_steps=1500`; default 10k / 100k (ReLU) / 10k / 10k).
# Why: the full default is 170k layer-steps x ~0.72 TFLOP (6 x 12·d² x 130.6k tokens = 0.62 T for the linear maps,
# + ~0.1 T attention) = 1.2e17 FLOP -> ~41 min at 50 TFLOP/s, over the 8-minute slot. The cap gives
# 1,500 x (1+1+3+3) = 12k layer-steps x 0.72 T = 8.6e15 FLOP -> ~170 s at 50 TFLOP/s, ~290 s at 30 (fp32, no AMP);
# estimate 3-6 min (UNMEASURED). What it cannot show: the residual peak (needs >= 10k Adam steps) and the ReLU
# model's 100k steps; the paper LRs (3e-4 Adam) are kept, so the sink may still be forming at 1,500 steps.
# Carry: nothing. Untested on a GPU.
source "$(dirname "$0")/_common.sh"
preflight
THREADS=4 run_study extreme-tokens --set max_steps=1500
