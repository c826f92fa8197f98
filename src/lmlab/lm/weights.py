"""What identifies the weights a model spec loads, without loading them: for keys of artifacts made by a model.

:func:`weights_fingerprint` (16 hex digits, prefixed by its kind):

- the default model and ``*.gguf`` files: the de-quantized cache's fingerprint
  (:func:`lmlab.lm.gguf.cache_fingerprint`: the GGUF file, the code and libraries that de-quantize it);
- a Hugging Face directory (or a hub id found in the local HF cache): sha256 of every file in it (weights,
  config, tokenizer), each file's hash kept in ``$LMLAB_CACHE/file-hashes.json`` under its path, size and
  modification time, so a model is read in full once, not on every call; a model re-saved at the same path
  gets a new modification time and is hashed again;
- ``dummy``: :class:`lmlab.lm.dummy.DummyLM`'s fingerprint; an HTTP endpoint or a hub id not in the local
  cache: the spec itself (its weights are not visible from here), marked ``remote:`` / ``unresolved:``.

>>> weights_fingerprint("http://localhost:8000/v1#m")
'remote:http://localhost:8000/v1#m'
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from lmlab.io import atomic_write_json, cache_root, fingerprint


def _sha256_file(path: Path, chunk: int = 8 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def files_fingerprint(root: str | Path) -> str:
    """sha256 over the relative paths and contents of every file under ``root`` (16 hex digits), each file's
    hash reused from ``$LMLAB_CACHE/file-hashes.json`` while its resolved path, size and mtime are unchanged."""
    root = Path(root)
    files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
    store = cache_root() / "file-hashes.json"
    try:
        known: dict[str, Any] = json.loads(store.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        known = {}
    changed, parts = False, []
    for p in files:
        real = p.resolve()  # hub snapshots are symlinks into blobs/
        st = real.stat()
        key = f"{real}|{st.st_size}|{st.st_mtime_ns}"
        if key not in known:
            known[key] = _sha256_file(real)
            changed = True
        parts.append([p.relative_to(root).as_posix() if root.is_dir() else p.name, known[key]])
    if changed:
        try:
            atomic_write_json(store, known)
        except OSError:  # a read-only cache only costs a re-hash next time
            pass
    return fingerprint(parts)


def weights_fingerprint(spec: str | Path | None = "default") -> str:
    """The identity of the weights ``load_lm(spec)`` would load (see the module docstring); cheap after the
    first call for a local model."""
    s = str(spec) if spec is not None else "default"
    if s in ("default", "smollm2", "") or s.endswith(".gguf"):
        from lmlab.lm.gguf import cache_fingerprint, check_gguf, default_gguf_path

        gguf = default_gguf_path() if not s.endswith(".gguf") else Path(s).expanduser()
        check_gguf(gguf)
        return "gguf:" + cache_fingerprint(gguf)["digest"]
    if s == "dummy":
        from lmlab.lm.dummy import DummyLM

        return "dummy:" + DummyLM().fingerprint
    if s.startswith(("http://", "https://")):
        return "remote:" + s
    path = Path(s).expanduser()
    if not path.exists():
        try:
            from huggingface_hub import snapshot_download

            path = Path(snapshot_download(s, local_files_only=True))
        except Exception:  # noqa: BLE001 - not in the local cache (or not a hub id): the spec is all we know
            return "unresolved:" + s
    return "files:" + files_fingerprint(path)
