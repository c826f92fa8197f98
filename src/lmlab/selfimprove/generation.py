"""Generation for the loop's many short decodes (samples, judgments, meta-judge verdicts, held-out answers):
every row through the engine's continuous batching with its own seed.

Why not ``lm.generate``: that decodes static batches, where a row that has ended keeps its slot until the
longest row of the batch ends, and one seed drives the whole batch, so the callers had to decode one group
(a prompt's K x N judgments, a pair's two responses) per call to keep a resumed run's draws unchanged; those
batches were 2-12 rows. Here all rows of a stage are submitted to :class:`lmlab.lm.engine.GenerationQueue`
(``lm.batch_size`` slots, a finished row's slot is refilled at once), and row ``i`` samples with its own
``torch.Generator`` seeded by ``seeds[i]``, so its text does not depend on which rows share its batch.
The sampling rule is ``lm.generate``'s (temperature, then transformers' default top-k of the model's generation
config, then top-p). Models the engine cannot run (and LMs without an engine) use ``lm.generate`` with the
first row's seed.

The rows of a stage are long prompts that share a head (a judge stage's rubric, a TPO thought prompt) and
repeat verbatim (a response's N judgments): the queue prefills their common token prefix once and copies
the keys/values of a repeated prompt instead of prefilling it again (``kv_reuse``; off gives the same texts
up to float rounding, for comparisons).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import as_completed
from typing import Any

import numpy as np


def row_seeds(seed: int, n: int) -> list[int]:
    """``n`` row seeds derived from one seed (row i's depends only on (seed, i))."""
    return [int(x) for x in np.random.default_rng([seed, 7_368_787]).integers(2**31 - 1, size=n)]


def engine_of(lm: Any) -> Any:
    if getattr(lm, "generate_with", "engine") != "engine" or not callable(getattr(lm, "engine", None)):
        return None
    return lm.engine()


#: a common prefix shorter than this is prefilled with each row (copying it would save little)
MIN_SHARED_PREFIX = 32


def shared_prefix(ids: Sequence[Sequence[int]], min_len: int = MIN_SHARED_PREFIX) -> list[int]:
    """The rows' common token prefix when it is long enough to be worth prefilling once, else []."""
    from lmlab.lm.hf import common_prefix

    if len(ids) < 2:
        return []
    prefix = common_prefix(ids)
    return prefix if len(prefix) >= min_len else []


def generate_rows(lm: Any, prompts: Sequence[str], max_new_tokens: int, temperature: float = 0.0,
                  top_p: float = 1.0, seeds: Sequence[int] | None = None, seed: int = 0,
                  on_done: Callable[[int, str], None] | None = None, kv_reuse: bool = True,
                  stats: dict | None = None) -> list[str]:
    """Continuations of ``prompts`` (full model inputs); ``seeds``: one per row (default: :func:`row_seeds`).
    ``on_done(i, text)`` is called (in the caller's thread) as each row finishes, for appending results.
    ``kv_reuse``: prefill a shared prefix once and copy repeated prompts' keys/values (see the module doc);
    ``stats``: a dict updated with the queue's counters (prefill tokens computed and reused)."""
    prompts = list(prompts)
    if not prompts:
        return []
    seeds = list(seeds) if seeds is not None else row_seeds(seed, len(prompts))
    if len(seeds) != len(prompts):
        raise ValueError(f"generate_rows: {len(seeds)} seeds for {len(prompts)} prompts")
    eng = engine_of(lm)
    if eng is None:
        texts = list(lm.generate(prompts, max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
                                 seed=seeds[0]))
        if on_done is not None:
            for i, t in enumerate(texts):
                on_done(i, t)
        return texts
    from lmlab.lm.engine import sampling_top_k

    top_k = sampling_top_k(lm.hf_model) if temperature > 0 else None
    ids = [lm.encode(p) for p in prompts]
    max_len = max(len(i) for i in ids) + max_new_tokens + 1
    slots = max(1, min(int(getattr(lm, "batch_size", 8)), len(ids)))
    prefix = shared_prefix(ids) if kv_reuse else []
    with eng.queue(max_batch=slots, max_pending=len(ids), max_len=max_len, shared_prefix=prefix,
                   reuse=kv_reuse) as q:
        futures = [q.submit(i, max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, top_k=top_k,
                            seed=s) for i, s in zip(ids, seeds)]
        if on_done is not None:
            index = {id(f): i for i, f in enumerate(futures)}
            for f in as_completed(futures):
                on_done(index[id(f)], f.result())
        texts = [f.result() for f in futures]
    if stats is not None:
        stats.update(q.stats)
    return texts
