"""Reward-model scores through the one artifact cache (:class:`lmlab.io.ArtifactCache`).

Each scored item (``(prompt, response)``, or ``(prompt, response_1, response_2)`` for a preference margin) is
one entry keyed by the reward model's fingerprint (its spec, the LM's fingerprint for LM-based adapters and
the source of the adapter's modules) and the item's text. Items are scored in chunks that are committed as
they finish, so an interrupted run resumes after its last chunk; items whose text changed are scored anew.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lmlab.io import ArtifactCache

SCORES_FILE = "rm-scores.sqlite"


def rm_cache(rm: Any, root: str | Path, label: str, fn_name: str = "score") -> ArtifactCache:
    """The cache of ``rm``'s ``fn_name`` values under ``root`` (``root/rm-scores.sqlite``)."""
    return ArtifactCache("rm-scores", model=rm.fingerprint, config={"spec": rm.spec, "fn": fn_name},
                         code=rm.code_modules(), root=root, label=label)


def cached_scores(rm: Any, items: Sequence[Any], fn: Callable[[list[int]], Any], root: str | Path, chunk: int,
                  label: str, fn_name: str = "score", progress: bool = False, desc: str = "",
                  stage: dict[str, Any] | None = None) -> np.ndarray:
    """``fn(indices)`` -> one float per index, for every item not already cached; (n,) floats in item order.
    ``stage``, when given, receives the cache's record for ``summary.json``'s ``stages``
    (:meth:`lmlab.io.ArtifactCache.stage`)."""
    cache = rm_cache(rm, root, label, fn_name)

    def compute(idx: list[int]) -> Any:
        starts: Any = range(0, len(idx), chunk)
        if progress and len(starts):
            from tqdm import tqdm

            starts = tqdm(starts, desc=desc or label, leave=False)
        for s in starts:
            sub = idx[s:s + chunk]
            yield sub, [float(v) for v in fn(sub)]

    values = cache.map(list(items), compute)
    if stage is not None:
        stage.update(cache.stage())
    cache.close()
    return np.array(values, dtype=float)
