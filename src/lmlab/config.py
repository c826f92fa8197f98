"""Frozen, validated configuration dataclasses.

Every config in lmlab is a frozen dataclass that inherits :class:`Config`. Validation happens
on construction (``__post_init__`` calls :meth:`Config.validate`), and every error is a
:class:`ConfigError` whose message names the field and says how to fix it.

Configs can be built from nested dictionaries (JSON files) and patched with dotted overrides,
as the CLI does with ``--set model.d_model=128``::

    >>> from lmlab.nn import TinyConfig
    >>> cfg = TinyConfig(d_vocab=10, n_ctx=8)
    >>> apply_overrides(cfg, ["d_model=32", "n_heads=2"]).head_dim
    16
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import platform
import subprocess
import sys
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin

C = TypeVar("C", bound="Config")


class ConfigError(ValueError):
    """A config or data value is invalid. The message names the field and the fix."""


class Config:
    """Mixin for frozen dataclasses: type checks on construction, dict round-trip, overrides."""

    def __post_init__(self) -> None:
        _check_types(self)
        self.validate()

    def validate(self) -> None:
        """Cross-field checks; subclasses override and raise ConfigError."""

    # -- dict round trip -------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return _to_jsonable(self)

    @classmethod
    def from_dict(cls: type[C], data: dict[str, Any], _path: str = "") -> C:
        if not isinstance(data, dict):
            raise ConfigError(f"{_path or cls.__name__}: expected a mapping, got {type(data).__name__}")
        hints = typing.get_type_hints(cls)
        names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            full = f"{_path}{key}"
            if key not in names:
                raise ConfigError(_unknown_key_message(full, key, names, cls.__name__))
            kwargs[key] = _coerce(value, hints[key], full)
        try:
            return cls(**kwargs)
        except TypeError as e:  # pragma: no cover - missing required field
            raise ConfigError(f"{cls.__name__}: {e}") from None

    def replace(self: C, **changes: Any) -> C:
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]


def _unknown_key_message(full: str, key: str, names: list[str], owner: str) -> str:
    close = difflib.get_close_matches(key, names, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return f"unknown config key '{full}' for {owner}{hint} Valid keys: {', '.join(names)}"


def _to_jsonable(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [_to_jsonable(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): _to_jsonable(v) for k, v in obj.items()}
    return obj


def _type_name(tp: Any) -> str:
    if get_origin(tp) is Literal:
        return " | ".join(repr(a) for a in get_args(tp))
    return getattr(tp, "__name__", str(tp)).replace("typing.", "")


def _coerce(value: Any, tp: Any, path: str) -> Any:
    """Convert a JSON/CLI value to the annotated type, or raise ConfigError naming the field."""
    origin = get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, path)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{path}: {value!r} does not fit {tp}")
    if origin is Literal:
        allowed = get_args(tp)
        if value not in allowed:
            raise ConfigError(f"{path}: {value!r} is not allowed; choose one of {', '.join(map(repr, allowed))}")
        return value
    if origin in (tuple, list):
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                value = [v for v in value.split(",") if v]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path}: expects a list, got {value!r}")
        args = get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis and len(args) != len(value):
            raise ConfigError(f"{path}: expects {len(args)} values, got {len(value)} ({value!r})")
        item_types = [args[0]] * len(value) if (origin is list or (args and args[-1] is Ellipsis)) else list(args)
        if not item_types:
            item_types = [Any] * len(value)
        items = [_coerce(v, t, f"{path}[{i}]") for i, (v, t) in enumerate(zip(value, item_types))]
        return tuple(items) if origin is tuple else items
    if isinstance(tp, type) and dataclasses.is_dataclass(tp) and issubclass(tp, Config):
        if isinstance(value, tp):
            return value
        return tp.from_dict(value, _path=f"{path}.")
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ConfigError(f"{path}: expects true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"{path}: expects an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        raise ConfigError(f"{path}: expects an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{path}: expects a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{path}: expects a string, got {value!r}")
    return value


def _check_types(cfg: Any) -> None:
    """Check (and normalise) every field's type on construction, so Python callers get the same errors."""
    hints = typing.get_type_hints(type(cfg))
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        coerced = _coerce(value, hints[f.name], f"{type(cfg).__name__}.{f.name}")
        object.__setattr__(cfg, f.name, coerced)


def _parse_cli_value(raw: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def apply_overrides(cfg: C, overrides: list[str] | dict[str, Any]) -> C:
    """Return ``cfg`` with dotted ``key=value`` overrides applied (values parsed as JSON when possible)."""
    items = overrides.items() if isinstance(overrides, dict) else [_split_override(o) for o in overrides]
    data = cfg.to_dict()
    for key, value in items:
        node: Any = data
        owner: Any = type(cfg)
        parts = key.split(".")
        for i, part in enumerate(parts):
            names = [f.name for f in dataclasses.fields(owner)]
            if part not in names:
                raise ConfigError(_unknown_key_message(key, part, names, owner.__name__))
            if i == len(parts) - 1:
                node[part] = _parse_cli_value(value) if isinstance(value, str) else value
            else:
                owner = _section_type(typing.get_type_hints(owner)[part])
                if owner is None:
                    raise ConfigError(f"config key '{key}': '{part}' is not a section")
                if node[part] is None:
                    raise ConfigError(f"config key '{key}': section '{part}' is null; set it whole first, "
                                      f"e.g. --set '{'.'.join(parts[:i + 1])}={{}}'")
                node = node[part]
    return type(cfg).from_dict(data)


def _section_type(hint: Any) -> type | None:
    """The dataclass a dotted key descends into: ``Section`` or ``Section | None``; None if not a section."""
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return hint
    if get_origin(hint) in (typing.Union, types.UnionType):
        sections = [a for a in get_args(hint) if isinstance(a, type) and dataclasses.is_dataclass(a)]
        if len(sections) == 1 and all(a is type(None) or a is sections[0] for a in get_args(hint)):
            return sections[0]
    return None


def _split_override(item: str) -> tuple[str, str]:
    if "=" not in item:
        raise ConfigError(f"override '{item}' must look like key=value (for example model.d_model=128)")
    key, value = item.split("=", 1)
    return key.strip(), value.strip()


@dataclasses.dataclass(frozen=True)
class LMConfig(Config):
    """The ``lm`` section of every study or tool that uses a pretrained model (``--model``, ``--device``)."""

    model: str = "default"  # lmlab.lm.load_lm spec: default (SmolLM2 GGUF), a .gguf, an HF directory, a URL
    device: str = "cpu"
    batch_size: int = 8

    def validate(self) -> None:
        if self.batch_size < 1:
            raise ConfigError(f"lm.batch_size ({self.batch_size}) must be >= 1")
        if not self.model:
            raise ConfigError("lm.model is empty; use 'default' (the embedded SmolLM2) or a path")


@dataclasses.dataclass(frozen=True)
class Variant(Config):
    """A named variant of a study's base config: dotted overrides applied with :func:`apply_overrides`,
    e.g. ``Variant("relu_1l", ("model.attn_act=relu", "train.lr=3e-3"))``."""

    name: str = "base"
    overrides: tuple[str, ...] = ()

    def validate(self) -> None:
        if not self.name:
            raise ConfigError("Variant.name is empty; give each variant a name")
        for o in self.overrides:
            _split_override(o)

    def apply(self, cfg: C) -> C:
        """``cfg`` with this variant's overrides; errors name the variant."""
        try:
            return apply_overrides(cfg, list(self.overrides))
        except ConfigError as e:
            raise ConfigError(f"variant '{self.name}': {e}") from None


def set_everywhere(cfg: C, key: str, value: Any) -> tuple[C, list[str]]:
    """Set field ``key`` in every section of ``cfg`` that has it (``--device`` reaches every trained
    component and every ``lm`` section); returns the new config and the dotted paths that were set."""
    paths: list[str] = []

    def walk(obj: Any, prefix: str) -> None:
        if not (dataclasses.is_dataclass(obj) and isinstance(obj, Config)):
            return
        for f in dataclasses.fields(obj):
            if f.name == key:
                paths.append(prefix + f.name)
            walk(getattr(obj, f.name), f"{prefix}{f.name}.")

    walk(cfg, "")
    return (apply_overrides(cfg, {p: value for p in paths}) if paths else cfg), paths


def load_config_file(cls: type[C], path: str | Path) -> C:
    """Load a JSON config file into ``cls``; errors name the file and the field."""
    from lmlab.io import read_json

    path = Path(path)
    data: Any = read_json(path, ConfigError, what="config file")
    try:
        return cls.from_dict(data)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


def provenance() -> dict[str, Any]:
    """How an artifact was made: git commit, library versions, machine."""
    import torch

    commit = None
    dirty = None
    try:
        root = Path(__file__).resolve().parents[2]
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5
        ).stdout.strip() or None
        dirty = bool(
            subprocess.run(
                ["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True, text=True, timeout=5
            ).stdout.strip()
        )
    except (OSError, subprocess.SubprocessError):
        pass
    from lmlab import __version__

    return {
        "lmlab": __version__,
        "git_commit": commit,
        "git_dirty": dirty,
        "python": sys.version.split()[0],
        "torch": str(torch.__version__),
        "platform": platform.platform(),
        "torch_threads": torch.get_num_threads(),
    }
