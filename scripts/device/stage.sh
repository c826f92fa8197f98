#!/usr/bin/env bash
# Run THERE, in a call that carries one part of a model the study call cannot carry itself (the 64 MiB limit):
# copies whatever of .devmodel/ this call carried into /tmp/lmlab-stage, where it stays while the machine is warm
# (30 s after each call). The study call must follow within those 30 s. Untested on a GPU.
set -euo pipefail
cd "$(dirname "$0")/../.."
STAGE=${STAGE:-/tmp/lmlab-stage}
mkdir -p "$STAGE"
[ -d .devmodel ] || { echo "error: this call carried no .devmodel/ folder" >&2; exit 2; }
cp -r .devmodel/. "$STAGE/"
ls -la "$STAGE"
