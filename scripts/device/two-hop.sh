#!/usr/bin/env bash
# two-hop, the PAPER config = the study's default (`lmlab run two-hop`, docs/studies/two-hop.md: d_model 256, lr 3e-4,
# batch 512, K 5, at most 10,000 steps, early stop after 6 solved evals), seed 42, on CUDA.
# Estimate (UNMEASURED): one step is ~78 GFLOP forward+backward (12·d²·tokens + 4·T²·d, inventory) -> 1.6 ms at a
# conservative 50 TFLOP/s (fp32), but a 3-layer model is launch-bound: ~10 ms/step with the dense evals (every 10
# steps, 1,024 rows). Seed 42 stopped at step 1,200 on CPU -> ~15-30 s; the 10,000-step cap -> ~100-200 s. 1-4 min.
# Carry: nothing (no wheel, no model). Untested on a GPU.
source "$(dirname "$0")/_common.sh"
preflight
THREADS=4 run_study two-hop --seed 42
