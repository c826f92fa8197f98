#!/usr/bin/env bash
# Run HERE (the CPU machine, in the repository root), once, before a device call that needs a pretrained model or
# a wheel. Makes the ignored folders that `carry` names (scripts/device/README.md):
#   .devmodel/smollm2.gguf.part-aa, -ab   the SmolLM2 GGUF (98 MB) split in two 47 MiB halves, + its sha256
#   .devmodel/minilm-f16/                 all-MiniLM-L6-v2 rounded to float16 (~45 MB)
#   .whl/                                 gguf (de-quantizes the GGUF there), gptcache + faiss-cpu + sqlalchemy (prompt-cache),
#                                         trl + datasets + dill + multiprocess (tpo, meta-rewarding); none is in the device image
# Untested: written without a device machine. Needs the models installed here (`make models`).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
mkdir -p .devmodel .whl
gguf=$(PYTHONPATH=src $PY -c "from lmlab.lm.gguf import default_gguf_path; print(default_gguf_path())")
split -b 47m -a 2 "$gguf" .devmodel/smollm2.gguf.part-
sha256sum "$gguf" | cut -d' ' -f1 > .devmodel/smollm2.gguf.sha256
minilm=$(PYTHONPATH=src $PY -c "from lmlab.lm.embed import default_embedder_path; print(default_embedder_path())")
PYTHONPATH=src $PY scripts/device/minilm_f16.py narrow "$minilm" .devmodel/minilm-f16
if [ "${WHEELS:-1}" = 1 ]; then
  $PY -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .whl gguf==0.19.0 gptcache==0.1.44 faiss-cpu sqlalchemy trl==1.16.0 datasets==5.2.0 "dill<0.4.2" "multiprocess<0.70.20"
fi
ls -la .devmodel .devmodel/minilm-f16 .whl 2>/dev/null
du -sh .devmodel/* .whl 2>/dev/null
