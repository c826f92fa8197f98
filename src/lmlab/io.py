"""Atomic file writes, shared by checkpoints, caches and data files.

A run killed mid-write must leave either the old file or the new one, never a truncated file that a
resumed run would read back: write to a temporary name beside the target, then ``os.replace`` it.

>>> import tempfile, pathlib
>>> p = pathlib.Path(tempfile.mkdtemp()) / "x.json"
>>> atomic_write_text(p, '{"a": 1}') == p and p.read_text()
'{"a": 1}'
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; it replaces ``path`` when the block ends without error and is
    removed otherwise. The temporary name keeps the suffix, so ``np.save``/``np.savez`` add nothing to it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.tmp-{os.getpid()}{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def cache_root() -> Path:
    """Where lmlab keeps caches it can rebuild (model conversions, features, the zoo): ``$LMLAB_CACHE``,
    default ``~/.cache/lmlab``."""
    return Path(os.environ.get("LMLAB_CACHE") or Path.home() / ".cache" / "lmlab").expanduser()


def atomic_write_text(path: str | Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def read_json(path: str | Path, error: type[Exception] = ValueError, what: str = "", fix: str = "") -> object:
    """Parse a JSON file; a missing or malformed file raises ``error`` with one line naming the file
    (``what`` describes it, ``fix`` says what to do)."""
    import json

    path = Path(path)
    label = f"{what} {path}".strip()
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise error(f"{label} does not exist{': ' + fix if fix else ''}") from None
    except json.JSONDecodeError as e:
        raise error(f"{label} is not valid JSON: line {e.lineno} column {e.colno}: {e.msg}"
                    f"{'; ' + fix if fix else ''}") from None
