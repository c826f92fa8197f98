"""Checkpoints: weights, optimizer, schedule, RNG state, config and provenance in one file.

Writes are atomic (temporary file, then rename), so a run killed while saving leaves the previous
checkpoint intact. A file that cannot be read raises :class:`CheckpointError` with a message that
says what to do, never a bare unpickling trace.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from lmlab.io import atomic_path

FORMAT_VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint is missing, corrupt or incompatible with the current run."""


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save({"format_version": FORMAT_VERSION, **state}, tmp)
    return path


def _refusal_line(e: BaseException) -> str:
    """The line of torch's weights-only refusal that names what was refused (its first lines are generic advice)."""
    lines = [x.strip() for x in str(e).splitlines() if x.strip()]
    named = [x for x in lines if "unsupported" in x.lower() or "global" in x.lower()]
    return (named or lines or [type(e).__name__])[0][:200]


def load_data(path: str | Path, map_location: str | torch.device = "cpu", allow: tuple[type, ...] = ()) -> Any:
    """``torch.load`` with ``weights_only=True``: tensors, plain containers and the classes in ``allow`` (our own
    data classes, rebuilt from their fields) load; anything else (a callable, a foreign class) is refused
    without being run, with a one-line :class:`CheckpointError` that names the file and what to do."""
    path = Path(path)
    try:
        # safe_globals scopes the allow-list to this call (add_safe_globals would widen every later load).
        with torch.serialization.safe_globals(list(allow)):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"checkpoint {path} holds objects other than tensors and plain data, refused without running them "
            f"({_refusal_line(e)}); delete it to recompute, or point --out at a new directory") from None


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        # weights_only=True: a checkpoint is data, never code. Ours hold only tensors and plain containers.
        state = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError, OSError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(
            f"checkpoint {path} is corrupt or truncated ({first[:160]}); delete it to start over, "
            "or point --out at a new directory"
        ) from None
    if not isinstance(state, dict) or "format_version" not in state:
        raise CheckpointError(f"checkpoint {path} was not written by lmlab (no format_version); use a new --out")
    if state["format_version"] > FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format {state['format_version']}, newer than this lmlab ({FORMAT_VERSION}); upgrade lmlab"
        )
    return state
