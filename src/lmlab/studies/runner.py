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
from pathlib import Path
from typing import Any

from lmlab.config import Config, ConfigError, LMConfig, apply_overrides, load_config_file, set_everywhere


def resolve_study(name: str) -> Any:
    """A study instance from a registry name (``lmlab list``) or a ``module:Class`` path (your own study)."""
    from lmlab.studies import STUDIES

    if ":" in name and name not in STUDIES.entries:
        module, _, attr = name.partition(":")
        try:
            cls = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as e:
            raise ConfigError(f"study '{name}': cannot import {attr} from {module} ({e}); "
                           "give a name from `lmlab list` or an importable module:Class") from None
        return cls()
    return STUDIES.get(name)()


def make_config(study: Any, *, quick: bool = False, config_file: str | Path | None = None,
                overrides: list[str] | tuple[str, ...] = (), seed: int | None = None, device: str | None = None,
                progress: bool | None = None, model: str | None = None, rm: list[str] | None = None,
                data: list[str] | None = None) -> Config:
    """The study's config with the command line's options applied (see the module docstring).

    One home per setting: ``--seed`` is the top-level seed; ``--device`` and ``--progress`` reach every
    section that has the field (each trained component's train section, the lm section); ``--model`` is
    ``lm.model``."""
    cfg = load_config_file(study.config_cls, Path(config_file)) if config_file else (
        study.quick_config() if quick else study.default_config())
    cfg = apply_overrides(cfg, list(overrides))
    if seed is not None:
        cfg = apply_overrides(cfg, {"seed": seed})
    if device is not None:
        cfg, where = set_everywhere(cfg, "device", device)
        if not where:
            raise ConfigError(f"--device: study '{study.name}' runs no model on a device")
    if progress is not None:
        cfg, _ = set_everywhere(cfg, "progress", progress)
    if model is not None:
        if not isinstance(getattr(cfg, "lm", None), LMConfig):
            raise ConfigError(f"--model: study '{study.name}' trains its own model; --model is for studies with an "
                              "lm section (see `lmlab list`)")
        cfg = apply_overrides(cfg, {"lm.model": model})
    for flag, key, values in (("--rm", "rms", rm), ("--data", "data", data)):
        if values:
            if not hasattr(cfg, key):
                raise ConfigError(f"{flag}: study '{study.name}' takes no {flag}; it is for reward-eval")
            cfg = apply_overrides(cfg, {key: list(values)})
    if run_device(cfg).startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ConfigError("device: CUDA was asked for but torch sees no GPU; use --device cpu")
    return cfg


def field_values(cfg: Any, key: str) -> list[Any]:
    """Every value of field ``key`` anywhere in a config tree."""
    import dataclasses

    out: list[Any] = []
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        for f in dataclasses.fields(cfg):
            v = getattr(cfg, f.name)
            if f.name == key:
                out.append(v)
            out += field_values(v, key)
    elif isinstance(cfg, (list, tuple)):
        for v in cfg:
            out += field_values(v, key)
    return out


def run_device(cfg: Config) -> str:
    """The device a run trains on: the first CUDA device named anywhere in the config, else cpu."""
    devices = [str(d) for d in field_values(cfg, "device")]
    return next((d for d in devices if d.startswith("cuda")), "cpu")


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
