#!/usr/bin/env bash
# Seed spreads and negative controls at --quick, one run at a time through `heavy` (one slot, one thread).
# Stops queueing new runs after $STOP_AFTER (HH:MM UTC). Usage: nohup scripts/issue16_s3_chain.sh > logs/chain.log 2>&1 &
set -u
cd "$(dirname "$0")/.."
STOP_AFTER=${STOP_AFTER:-19:15}
LMLAB="env PYTHONPATH=$PWD/src RAY_DISABLE_USAGE_STATS=1 /work/main/.venv/bin/lmlab"
PY="env PYTHONPATH=$PWD/src /work/main/.venv/bin/python"
step() {  # step NAME TIMEOUT CMD...
  local name=$1 to=$2; shift 2
  if [[ "$(date -u +%H:%M)" > "$STOP_AFTER" ]]; then echo "$(date -u +%T) SKIP $name (after $STOP_AFTER)"; return; fi
  echo "$(date -u +%T) QUEUE $name"
  local t0=$(date +%s)
  heavy timeout "$to" "$@" > "logs/$name.log" 2>&1
  echo "$(date -u +%T) DONE $name rc=$? $(( $(date +%s) - t0 ))s (incl. wait)"
}
sweep() { local s=$1; shift; [ $# -eq 0 ] && set -- --seeds 0-2; step "sweep-$s" 2400 $LMLAB sweep "$s" --quick --cpus-per-trial 1 --num-cpus 1 --no-progress --out "runs/repro/$s" "$@"; }
ctl() { local s=$1; step "control-$s" 1500 $LMLAB run "$s" --quick --control --threads 1 --out "runs/control/$s"; }
sweep reversal-curse --seeds 0,3,6  # the study repeats its main variant over seed, seed+1, seed+2: 0,3,6 keeps the seeds disjoint
sweep llm-two-hop
step et-1l-seeds 900 $PY scripts/extreme_tokens_seeds.py --seeds 0 1 2 --out runs/et-seeds
sweep tokenization
ctl extreme-tokens
ctl reward-eval
ctl embedllm
ctl two-hop
echo "$(date -u +%T) CHAIN END"
