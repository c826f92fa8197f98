"""Caching simulation over a query stream, threshold sweeps, and threshold calibration for an error bound.

The simulated cache follows :class:`lmlab.cache.SemanticCache`'s policy on precomputed unit vectors: each
query is served by its most similar earlier *stored* query when the similarity is >= tau, otherwise it is a
miss and is stored (exact duplicates are always similarity 1). A hit is correct when the two keys are equal
(the cached answer answers the query). Rates are per query:

- hit rate = hits / queries; correct-hit rate = correct hits / queries;
- wrong-hit rate = wrong hits / queries (the issue's definition); precision loss = wrong hits / hits.

>>> import numpy as np
>>> v = np.eye(3, dtype=np.float32)[[0, 0, 1, 2]]
>>> r = simulate(v, ["a", "a", "b", "c"], [1.0])
>>> r[0]["hits"], r[0]["correct_hits"]
(1, 1)
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np


def simulate(vecs: np.ndarray, keys: Sequence[Hashable], taus: Sequence[float],
             texts: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """One pass per threshold; ``texts`` (optional) makes identical texts similarity exactly 1 even if the
    embedder is not deterministic. Returns one row per tau."""
    vecs = np.asarray(vecs, dtype=np.float32)
    n = len(keys)
    sims = vecs @ vecs.T
    if texts is not None:
        t = np.asarray(texts, dtype=object)
        sims = np.where(t[:, None] == t[None, :], 1.0, np.minimum(sims, 1.0 - 1e-6))
    key_id = {k: i for i, k in enumerate(dict.fromkeys(keys))}
    kid = np.array([key_id[k] for k in keys])
    rows = []
    for tau in taus:
        stored = np.zeros(n, dtype=bool)
        hits = correct = 0
        for i in range(n):
            if i and stored[:i].any():
                cand = np.flatnonzero(stored[:i])
                j = cand[int(np.argmax(sims[i, cand]))]
                if sims[i, j] >= tau:
                    hits += 1
                    correct += int(kid[j] == kid[i])
                    continue
            stored[i] = True
        wrong = hits - correct
        rows.append({"tau": float(tau), "hits": hits, "correct_hits": correct, "wrong_hits": wrong,
                     "hit_rate": hits / n, "correct_hit_rate": correct / n, "wrong_hit_rate": wrong / n,
                     "wrong_per_hit": wrong / hits if hits else 0.0, "n": n})
    return rows


def static_hit_rates(vecs: np.ndarray, taus: Sequence[float], texts: Sequence[str] | None = None) -> list[float]:
    """Hit rate per tau when every query is stored after its lookup (the cache content does not depend on tau):
    query i hits when its best similarity to queries 0..i-1 is >= tau. Monotone in tau by construction; the
    dynamic policy of :func:`simulate` (store only misses) is not, because a lower tau stores fewer entries."""
    vecs = np.asarray(vecs, dtype=np.float32)
    sims = vecs @ vecs.T
    if texts is not None:
        t = np.asarray(texts, dtype=object)
        sims = np.where(t[:, None] == t[None, :], 1.0, np.minimum(sims, 1.0 - 1e-6))
    best = np.array([sims[i, :i].max() if i else -np.inf for i in range(len(vecs))])
    return [float((best >= tau).mean()) for tau in taus]


def max_hit_rate_drop(rows: Sequence[dict[str, Any]]) -> float:
    """The largest fall in hit rate when tau is lowered one grid step (0 for a monotone sweep)."""
    rs = sorted(rows, key=lambda r: r["tau"])
    return float(max([0.0] + [b["hit_rate"] - a["hit_rate"] for a, b in zip(rs, rs[1:])]))


def exact_match(texts: Sequence[str], keys: Sequence[Hashable]) -> dict[str, Any]:
    """An exact-match cache: hits only on identical text."""
    seen: dict[str, Hashable] = {}
    hits = correct = 0
    for t, k in zip(texts, keys):
        if t in seen:
            hits += 1
            correct += int(seen[t] == k)
        else:
            seen[t] = k
    n = len(texts)
    return {"tau": 1.0, "hits": hits, "correct_hits": correct, "wrong_hits": hits - correct, "hit_rate": hits / n,
            "correct_hit_rate": correct / n, "wrong_hit_rate": (hits - correct) / n,
            "wrong_per_hit": (hits - correct) / hits if hits else 0.0, "n": n}


def at_budget(rows: Sequence[dict[str, Any]], budget: float) -> dict[str, Any] | None:
    """The row with the highest correct-hit rate whose wrong-hit rate is <= budget (None if none is)."""
    ok = [r for r in rows if r["wrong_hit_rate"] <= budget + 1e-12]
    return max(ok, key=lambda r: (r["correct_hit_rate"], -r["tau"])) if ok else None


def threshold_for_target_error(rows: Sequence[dict[str, Any]], target_error: float) -> float:
    """vCache-style ``target_error`` mode with one global threshold: from a sweep over a *calibration* stream,
    the lowest tau whose wrong-hit rate is <= target_error and stays so for every higher tau (so the choice is
    not an isolated lucky point). Returns 1.0 (exact duplicates only) when no tau qualifies."""
    rs = sorted(rows, key=lambda r: r["tau"], reverse=True)
    best = 1.0
    for r in rs:
        if r["wrong_hit_rate"] > target_error + 1e-12:
            break
        best = r["tau"]
    return float(best)
