"""Name -> "module:Class" registries, imported lazily so that `import lmlab` does no work."""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Iterable
from typing import Any

from lmlab.config import ConfigError


class UnknownName(ConfigError, KeyError):
    """A name that no registry entry has. A ConfigError (the CLI prints it as one line) and, for callers
    written against dict-like lookups, a KeyError."""

    __str__ = Exception.__str__  # KeyError would quote the message


class Registry:
    def __init__(self, kind: str, entries: dict[str, str]):
        self.kind = kind
        self.entries = dict(entries)

    def names(self) -> list[str]:
        return sorted(self.entries)

    def __contains__(self, name: object) -> bool:
        return name in self.entries

    def register(self, name: str, target: str) -> None:
        if name in self.entries:
            raise ValueError(f"{self.kind} '{name}' is already registered")
        self.entries[name] = target

    def check(self, names: Iterable[str], field: str) -> None:
        """Every name is registered (nothing is imported); else :class:`UnknownName` naming the config ``field``."""
        for name in names:
            if name not in self.entries:
                try:
                    self.get(name)
                except UnknownName as e:
                    raise UnknownName(f"{field}: {e}") from None

    def get(self, name: str) -> Any:
        if name not in self.entries:
            close = difflib.get_close_matches(name, self.entries, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise UnknownName(f"unknown {self.kind} '{name}'{hint}; known: {', '.join(self.names())}")
        module, _, attr = self.entries[name].partition(":")
        return getattr(importlib.import_module(module), attr)
