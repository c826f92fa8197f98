#!/usr/bin/env bash
# token-assorted at an INTERMEDIATE size: the default task (9x9 mazes, 2 keys, density 0.2) with the --quick
# VQ-VAE, models of 4 layers x d 128 (the pilot's `size-4L-d128`, docs/studies/token-assorted.md), 5,000 steps of
# batch 64, 20,000 training mazes, the --quick 200 held-out mazes.
# Why: the default (12-layer d 768 models, 50k steps of 64 traces of ~600 tokens, 100k VQ-VAE steps) is
# ~6 x 85M x 38k = 2e13 FLOP per LM step x 50k steps x ~3 arms = 3e18 FLOP -> ~17 h at 50 TFLOP/s.
# This size: ~3.2e11 FLOP per step (linear 6 x 0.79M x 38k + attention 12·T²·d·L·B) x 15k steps = 4.8e15 FLOP ->
# ~100 s at 50 TFLOP/s, but launch-bound at ~10 ms/step -> ~150 s; sampling 200 mazes x 11 rows x <= 513 tokens per
# arm -> ~60-120 s; maze generation and A* traces for 20k 9x9 mazes on the CPU: not measured (could dominate).
# Estimate 5-8 min (UNMEASURED). Carry: nothing. Untested on a GPU.
source "$(dirname "$0")/_common.sh"
preflight
run_study token-assorted --quick \
  --set task.size=9 --set task.n_keys=2 --set task.wall_density=0.2 --set n_train=20000 --set n_eval=200 \
  --set model.n_layers=4 --set model.d_model=128 --set model.n_heads=4 \
  --set train.steps=5000 --set train.warmup_steps=250 --set train.eval_every=500 --set train.checkpoint_every=500 \
  --set batch_size=64
