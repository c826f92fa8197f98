#!/usr/bin/env bash
# ideal: CANNOT run as a device job. Its config has no device field (`--device cuda` is refused: "runs no model on a
# device"), so the default's PixelCNN fits (7 designs, 64 channels, 40 components, up to 200 x 100 steps on 16x16:
# >= ~10 h on one CPU thread, inventory) would run on the device machine's 16 CPU cores, which cannot bring that
# under the 8-minute slot (even a perfect 16x speed-up leaves >= 40 min). Making it a device job needs code: a
# `device` field reaching the PixelCNN fits (src/lmlab/studies/ideal.py, src/lmlab/imaging). Until then this exits 2.
# DEVICE: cannot run
set -euo pipefail
echo "error: ideal cannot run on the device machine: its config has no device field (the PixelCNN fits are CPU-only, >= 10 h of one core); see scripts/device/README.md" >&2
exit 2
