# Sourced by scripts/device/<study>.sh: preflight, model staging, and the copy of results into $OUT.
# Untested on a GPU: no device machine was lent to the session that wrote it.
#
# Layout: every script runs from the repository root with PYTHONPATH=src. The run directory is
# $RUN_ROOT/<study> (RUN_ROOT defaults to runs/device: ignored by git, so on the device machine it survives between
# calls while the machine stays warm and a rerun resumes from its checkpoints). $OUT (the device tool's return
# folder; unset elsewhere) gets only flat copies: summary.json, the log, at most 3 PNG figures (<= 5 of the 8 files
# that come back per call).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
export PYTHONPATH=src PYTHONUNBUFFERED=1
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1
PY=${PY:-python3}
OUT=${OUT:-runs/device}
RUN_ROOT=${RUN_ROOT:-runs/device}
STAGE=${STAGE:-/tmp/lmlab-stage}   # model parts copied here by scripts/device/stage.sh (kept while the machine is warm)
mkdir -p "$OUT" "$RUN_ROOT"

die() { echo "error: $*" >&2; exit 2; }

# Wheels carried in .whl (see scripts/device/README.md) are installed into /tmp/site first, when present.
install_wheels() {
  if compgen -G ".whl/*.whl" >/dev/null; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
      || die "installing the carried wheels in .whl failed"
    export PYTHONPATH="src:/tmp/site"
  fi
}

# preflight PKG...: versions, CUDA present, each import name importable; one line on failure.
preflight() {
  install_wheels
  $PY - "$@" <<'PYEOF' || exit 2
import importlib, platform, sys
try:
    import torch
except ImportError:
    sys.exit("error: torch is not importable by " + sys.executable)
print(f"python {platform.python_version()} ({sys.executable}); torch {torch.__version__}; "
      f"CUDA {torch.version.cuda}; available {torch.cuda.is_available()}", flush=True)
if not torch.cuda.is_available():
    sys.exit("error: CUDA is not available to torch on this machine; these scripts are for the GPU machine")
print(f"GPU: {torch.cuda.get_device_name(0)}", flush=True)
for name in sys.argv[1:]:
    try:
        importlib.import_module(name)
    except Exception as e:
        sys.exit(f"error: Python package '{name}' is missing here ({type(e).__name__}: {e}); carry it as a wheel in .whl")
import lmlab  # noqa: F401  (PYTHONPATH=src)
PYEOF
}

# smollm2_gguf: prints the path of SmolLM2-135M-Instruct.Q4_1.gguf, joined from its two split parts
# (.devmodel/smollm2.gguf.part-aa, -ab: 47 MiB each, too big to travel together with the repo in one call),
# found in .devmodel/ (carried in this call) or in $STAGE (copied there by an earlier call's stage.sh).
SMOL_SHA256=${SMOL_SHA256:-}
smollm2_gguf() {
  local dst=/tmp/lmlab-model/SmolLM2-135M-Instruct.Q4_1.gguf part parts=()
  if [ -s "$dst" ]; then echo "$dst"; return; fi
  for part in aa ab; do
    if [ -s ".devmodel/smollm2.gguf.part-$part" ]; then parts+=(".devmodel/smollm2.gguf.part-$part")
    elif [ -s "$STAGE/smollm2.gguf.part-$part" ]; then parts+=("$STAGE/smollm2.gguf.part-$part")
    else die "SmolLM2 GGUF part '$part' is on neither .devmodel/ nor $STAGE: the 98 MB model cannot travel in one call (64 MiB); stage part aa first (scripts/device/README.md, 'LLM studies')"; fi
  done
  mkdir -p "$(dirname "$dst")"
  cat "${parts[@]}" > "$dst.tmp" && mv "$dst.tmp" "$dst"
  if [ -s .devmodel/smollm2.gguf.sha256 ]; then SMOL_SHA256=$(cut -d' ' -f1 .devmodel/smollm2.gguf.sha256); fi
  if [ -z "$SMOL_SHA256" ] && [ -s "$STAGE/smollm2.gguf.sha256" ]; then SMOL_SHA256=$(cut -d' ' -f1 "$STAGE/smollm2.gguf.sha256"); fi
  if [ -n "$SMOL_SHA256" ]; then
    echo "$SMOL_SHA256  $dst" | sha256sum -c --quiet >&2 || die "the joined GGUF's sha256 differs from the one recorded"
  fi
  echo "$dst"
}

# minilm_dir: a float32 all-MiniLM-L6-v2 sentence-transformers directory, rebuilt on the machine from the float16
# copy carried in .devmodel/minilm-f16 (or staged in $STAGE/minilm-f16): 45 MB instead of the 88 MB wheel. The
# weights are the float32 ones rounded to float16 (relative error <= 2^-11 per weight), then widened back.
minilm_dir() {
  local dst=/tmp/lmlab-model/minilm src
  if [ -s "$dst/modules.json" ]; then echo "$dst"; return; fi
  if [ -s .devmodel/minilm-f16/modules.json ]; then src=.devmodel/minilm-f16
  elif [ -s "$STAGE/minilm-f16/modules.json" ]; then src="$STAGE/minilm-f16"
  else die "all-MiniLM-L6-v2 (float16 copy) is on neither .devmodel/minilm-f16 nor $STAGE/minilm-f16; see scripts/device/README.md"; fi
  $PY scripts/device/minilm_f16.py widen "$src" "$dst" >&2 || die "widening the MiniLM copy to float32 failed"
  echo "$dst"
}

# collect STUDY: flat copies of summary.json, the log and at most 3 PNG figures into $OUT.
collect() {
  local run="$RUN_ROOT/$1" n=0 f
  [ -f "$run/summary.json" ] && cp "$run/summary.json" "$OUT/$1-summary.json"
  if [ "$OUT" != "$RUN_ROOT" ]; then
    while IFS= read -r f; do
      [ "$n" -lt 3 ] || break
      cp "$f" "$OUT/$1-$(basename "$f")"; n=$((n + 1))
    done < <(find "$run" -maxdepth 2 -name '*.png' | sort)
  fi
  ls -la "$OUT"
}

# finish STUDY RC: collect, say what a 124 means, exit with the study's status.
finish() {
  collect "$1"
  if [ "$2" = 124 ]; then echo "error: $1 stopped at the 480 s limit; rerun the same call at once to resume from its checkpoints" >&2; fi
  exit "$2"
}

# run_study STUDY [ARGS...]: `lmlab run STUDY --device cuda` under the 480 s limit with the shared flags (run directory
# $RUN_ROOT/STUDY, no progress bar, $THREADS CPU threads, default 8), its log into $OUT, then finish (collect, exit).
# Every study script ends with this one line, so the limit, the log and the copy-back live in one place.
run_study() {
  local study=$1 rc=0
  shift
  PYTHONPATH=src:/tmp/site timeout 480 $PY -m lmlab run "$study" --device cuda --out "$RUN_ROOT/$study" --no-progress \
    --threads "${THREADS:-8}" "$@" 2>&1 | tee "$OUT/$study.log" || rc=$?
  finish "$study" "$rc"
}
