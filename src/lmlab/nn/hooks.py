"""Named hook points and exception-safe recording.

A :class:`HookPoint` is an identity module. Models pass every activation worth studying through
one, and name it by its place in the module tree (``blocks.0.attn.hook_pattern``). With no hook
attached, a hook point returns its input unchanged; the model can ask ``hp.active`` to decide
whether to compute something expensive (the attention pattern) at all.

:class:`HookedRootModule` gives a model three ways to look inside:

* ``with model.record(names) as cache:`` stores detached activations in a dict;
* ``logits, cache = model.run_with_cache(tokens, names=...)``;
* ``with model.hooks([(name, fn)]):`` runs ``fn(tensor, hook)`` and uses its return value
  (if not None) in place of the activation, for ablations and patching.

Hooks are always removed on exit, also when the code inside the ``with`` raises.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

HookFn = Callable[[torch.Tensor, "HookPoint"], "torch.Tensor | None"]


class HookPoint(nn.Module):
    """Identity on its input; calls the attached functions, which may replace the value."""

    def __init__(self) -> None:
        super().__init__()
        self.name: str = ""
        self._fns: list[HookFn] = []

    @property
    def active(self) -> bool:
        return bool(self._fns)

    def add(self, fn: HookFn) -> Callable[[], None]:
        self._fns.append(fn)

        def remove() -> None:
            if fn in self._fns:
                self._fns.remove(fn)

        return remove

    def clear(self) -> None:
        self._fns.clear()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for fn in self._fns:
            out = fn(x, self)
            if out is not None:
                x = out
        return x

    def extra_repr(self) -> str:
        return self.name


class HookedRootModule(nn.Module):
    """Base class for models with hook points. Call :meth:`setup_hooks` at the end of ``__init__``."""

    def setup_hooks(self) -> None:
        self.hook_dict: dict[str, HookPoint] = {}
        for name, module in self.named_modules():
            if isinstance(module, HookPoint):
                module.name = name
                self.hook_dict[name] = module

    @property
    def hook_names(self) -> list[str]:
        return list(self.hook_dict)

    def resolve_names(self, names: Any) -> list[str]:
        """Names may be None (all), one name or glob ('blocks.*.attn.hook_pattern'), a list, or a predicate."""
        if names is None:
            return self.hook_names
        if callable(names):
            return [n for n in self.hook_dict if names(n)]
        if isinstance(names, str):
            names = [names]
        out: list[str] = []
        for pattern in names:
            matched = [n for n in self.hook_dict if fnmatch.fnmatchcase(n, pattern)]
            if not matched:
                close = [n for n in self.hook_dict if pattern.split(".")[-1] in n][:3]
                hint = f" (similar: {', '.join(close)})" if close else ""
                raise KeyError(f"no hook point named '{pattern}'{hint}; see model.hook_names")
            out.extend(m for m in matched if m not in out)
        return out

    @contextmanager
    def hooks(self, fwd_hooks: Iterable[tuple[Any, HookFn]]) -> Iterator[HookedRootModule]:
        """Attach ``fn`` to each named hook point (name, glob or predicate) for the ``with`` block."""
        removers: list[Callable[[], None]] = []
        try:
            for names, fn in fwd_hooks:
                for name in self.resolve_names(names):
                    removers.append(self.hook_dict[name].add(fn))
            yield self
        finally:
            for remove in removers:
                remove()

    @contextmanager
    def record(self, names: Any = None, detach: bool = True, to_cpu: bool = False) -> Iterator[dict[str, torch.Tensor]]:
        """Store the activations at ``names`` in a dict while the block runs.

        >>> from lmlab.nn import TinyConfig, TinyTransformer
        >>> m = TinyTransformer(TinyConfig(d_vocab=5, n_ctx=4, d_model=8, n_heads=2))
        >>> with m.record("blocks.0.attn.hook_pattern") as cache:
        ...     _ = m(torch.zeros(1, 4, dtype=torch.long))
        >>> tuple(cache["blocks.0.attn.hook_pattern"].shape)
        (1, 2, 4, 4)
        """
        cache: dict[str, torch.Tensor] = {}

        def save(x: torch.Tensor, hook: HookPoint) -> None:
            y = x.detach() if detach else x
            cache[hook.name] = y.cpu() if to_cpu else y

        with self.hooks([(n, save) for n in self.resolve_names(names)]):
            yield cache

    def run_with_cache(self, *args: Any, names: Any = None, detach: bool = True, **kwargs: Any) -> tuple[Any, dict[str, torch.Tensor]]:
        with self.record(names, detach=detach) as cache:
            out = self(*args, **kwargs)
        return out, cache

    def reset_hooks(self) -> None:
        for hp in self.hook_dict.values():
            hp.clear()
