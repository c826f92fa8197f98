"""Reading training curves (lists of eval rows)."""

from __future__ import annotations

from collections.abc import Sequence


def first_crossing(steps: Sequence[int], values: Sequence[float], threshold: float) -> int | None:
    """The first step whose value is >= ``threshold`` (None if it never gets there).

    >>> first_crossing([0, 50, 100], [0.1, 0.6, 0.9], 0.5)
    50
    """
    return next((int(s) for s, v in zip(steps, values) if v >= threshold), None)
