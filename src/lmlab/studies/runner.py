"""How a study is found, configured and limited to its threads: shared by ``lmlab run`` and ``lmlab sweep``.

``make_config`` applies, in this order, the study's default (or ``--quick``, or a ``--config`` file),
the ``--set`` overrides, then ``--seed``, ``--device``, ``--progress``, ``--model``, ``--rm`` and
``--data``; so a sweep trial gets exactly the config that ``lmlab run`` would build from the same options::

    >>> from lmlab.studies.runner import make_config, resolve_study
    >>> study = resolve_study("two-hop")
    >>> make_config(study, quick=True, overrides=["train.lr=1e-3"], seed=3).seed
    3
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

from lmlab.config import Config, ConfigError, apply_overrides, load_config_file


def resolve_study(name: str) -> Any:
    """A study instance from a registry name (``lmlab list``) or a ``module:Class`` path (your own study)."""
    from lmlab.studies import STUDIES

    if ":" in name and name not in STUDIES.entries:
        module, _, attr = name.partition(":")
        try:
            cls = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as e:
            raise KeyError(f"study '{name}': cannot import {attr} from {module} ({e}); "
                           "give a name from `lmlab list` or an importable module:Class") from None
        return cls()
    return STUDIES.get(name)()


def make_config(study: Any, *, quick: bool = False, config_file: str | Path | None = None,
                overrides: list[str] | tuple[str, ...] = (), seed: int | None = None, device: str | None = None,
                progress: bool | None = None, model: str | None = None, rm: list[str] | None = None,
                data: list[str] | None = None) -> Config:
    """The study's config with the command line's options applied (see the module docstring)."""
    cfg = load_config_file(study.config_cls, Path(config_file)) if config_file else (
        study.quick_config() if quick else study.default_config())
    # device and progress live in `train` for single-model studies, at the top for multi-model ones
    section = "train." if hasattr(cfg, "train") else ""
    ov = list(overrides)
    if seed is not None:
        ov.append(f"seed={seed}")
    if device is not None:
        ov.append(f"{section}device={device}")
    if progress is not None:
        ov.append(f"{section}progress={'true' if progress else 'false'}")
    if model is not None:
        if not isinstance(getattr(cfg, "model", None), str):
            raise ConfigError(f"--model: study '{study.name}' trains its own model; --model is for the llm-* studies")
        ov.append(f"model={json.dumps(model)}")
    for flag, key, values in (("--rm", "rms", rm), ("--data", "data", data)):
        if values:
            if not hasattr(cfg, key):
                raise ConfigError(f"{flag}: study '{study.name}' takes no {flag}; it is for reward-eval")
            ov.append(f"{key}={json.dumps(list(values))}")
    cfg = apply_overrides(cfg, ov)
    if str(run_device(cfg)).startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ConfigError("train.device: CUDA was asked for but torch sees no GPU; use --device cpu")
    return cfg


def run_device(cfg: Config) -> str:
    return str(getattr(getattr(cfg, "train", cfg), "device", "cpu"))


def default_out(study: str, quick: bool, control: bool, seed: int) -> Path:
    name = study.rpartition(":")[2] if ":" in study else study
    return Path("runs") / f"{name}{'-quick' if quick else ''}{'-control' if control else ''}-seed{seed}"


def set_threads(threads: int) -> None:
    """N threads for torch and for numpy's BLAS (threadpoolctl). Both default to one per core,
    which thrashes when other jobs share the cores."""
    if threads:
        import torch
        from threadpoolctl import threadpool_limits

        torch.set_num_threads(threads)
        threadpool_limits(threads)  # stays in force for the rest of the process
