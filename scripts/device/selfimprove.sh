#!/usr/bin/env bash
# The `device` (GPU) config of the self-improvement studies: SmolLM2-135M with larger K, more prompts and more DPO
# epochs than --quick, 2 iterations, sized for one run of at most 8 minutes on one GPU (not the default config:
# 4 iterations of 5,000 prompts x K 8, 10 epochs, are hours even there). Untested on a GPU: no device machine was
# lent to the sessions that wrote it.
#
# Estimate (UNMEASURED): per iteration 256 prompts x K 8 = 2,048 samples of <= 256 tokens at 128 slots: 16 waves x
# 256 decode steps x ~20 ms = ~80 s; DPO 4 epochs over <= 256 pairs at batch 16 = <= 64 steps x ~0.5 s = ~30 s;
# evaluation 300 problems x 256 tokens, ~30 s; x 2 iterations plus the seed evaluation: 5-7 min for tpo's two arms
# (the thought arm's pairs are few); meta-rewarding's judging (K x 5 judgments of 128 tokens per prompt) about doubles
# the sampling: 6-8 min.
#
# The model: the GGUF (98 MB) cannot travel in one call (64 MiB): stage part aa in the call before (stage.sh), carry
# part ab, the sha256, and the wheels trl, datasets, dill, multiprocess and gguf (scripts/device/README.md, "LLM
# studies"); or set MODEL to a local HF directory already on the machine.
#
#   bash scripts/device/selfimprove.sh [tpo|meta-rewarding]
source "$(dirname "$0")/_common.sh"
STUDY=${1:-tpo}
case "$STUDY" in tpo|meta-rewarding) ;; *) die "study must be tpo or meta-rewarding, got $STUDY" ;; esac
preflight transformers trl peft datasets gguf
MODEL=${MODEL:-$(smollm2_gguf)}
COMMON=(--model "$MODEL" --set lm.batch_size=128 --set train.lr=5e-6
        --set dpo.batch_size=16 --set dpo.epochs=4 --set iteration.K=8 --set iteration.max_new_tokens=256
        --set n_train=256 --set n_test=300 --set eval_max_new_tokens=256 --set iterations=2)
if [ "$STUDY" = tpo ]; then
  EXTRA=(--set n_valid=64)
else
  EXTRA=(--set iteration.judge_n=5 --set iteration.judge_max_new_tokens=128 --set meta_max_new_tokens=128 --set n_hh=128)
fi
run_study "$STUDY" --quick "${COMMON[@]}" "${EXTRA[@]}"
