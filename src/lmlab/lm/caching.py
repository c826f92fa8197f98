"""One caching wrapper over any LM (after lm-evaluation-harness's ``CachingLM``).

``CachingLM(lm, kind=..., config=..., code=...)`` answers ``next_token_logits`` and ``logprobs`` from an
:class:`lmlab.io.ArtifactCache` keyed by the model's fingerprint, the config, the declared code modules and
each input; misses go to the wrapped model (``iter_next_token_logits``: sorted batches with a shared-prefix
KV cache on HF backends) and are stored batch by batch. Everything else is passed through.

>>> from lmlab.lm.dummy import DummyLM
>>> lm = CachingLM(DummyLM(), root=None)           # root=None: nothing stored (same interface)
>>> lm.next_token_logits(["ab", "cd"]).shape, lm.stats
(torch.Size([2, 256]), {'computed': 2, 'cached': 0})
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lmlab.io import ArtifactCache, fingerprint
from lmlab.lm.base import require

DEFAULT = object()


def lm_code(lm: Any) -> tuple[str, ...]:
    """The modules whose code decides ``lm``'s outputs: the interface and the backend's module."""
    return ("lmlab.lm.base", type(lm).__module__)


class CachingLM:
    """``lm`` with its logits and log-probabilities cached on disk (``root``; ``DEFAULT``: ``cache_root()``)."""

    def __init__(self, lm: Any, kind: str = "lm", config: Any = None, code: Sequence[str] = (),
                 root: str | Path | None | object = DEFAULT, batch_size: int | None = None, progress: bool = False,
                 share_prefix: bool = True):
        self.lm = lm
        self.batch_size = batch_size
        self.progress = progress
        self.share_prefix = share_prefix
        code = lm_code(lm) + tuple(code)
        if root is None:
            self._logits, self._lp = ArtifactCache.off(kind), ArtifactCache.off(kind)
        else:
            r = None if root is DEFAULT else Path(root)  # type: ignore[arg-type]
            self._logits = ArtifactCache(kind, model=lm.fingerprint, config={"fn": "next_token_logits", "cfg": config},
                                         code=code, root=r, label=f"{lm.name}:logits")
            self._lp = ArtifactCache(kind, model=lm.fingerprint, config={"fn": "logprobs", "cfg": config},
                                     code=code, root=r, label=f"{lm.name}:logprobs")

    @property
    def stats(self) -> dict[str, int]:
        return {k: self._logits.stats[k] + self._lp.stats[k] for k in ("computed", "cached")}

    def stage(self) -> dict[str, Any]:
        """The record for ``summary.json``'s ``stages`` of what was asked so far: the logits cache's, or the
        log-probabilities' when only those were used (:meth:`lmlab.io.ArtifactCache.stage`)."""
        used = self._lp if sum(self._lp.stats.values()) and not sum(self._logits.stats.values()) else self._logits
        return used.stage()

    def __getattr__(self, name: str) -> Any:  # everything not cached is the wrapped model's
        return getattr(self.__dict__["lm"], name)

    def next_token_logits(self, prompts: Sequence[str]) -> torch.Tensor:
        """(n, vocab) float32 logits, each row cached under (model, config, code, prompt)."""
        require(self.lm, ("logits",))
        if isinstance(prompts, str):
            raise TypeError("prompts must be a sequence of strings; wrap a single prompt in a list")
        prompts = list(prompts)

        def compute(idx: list[int]) -> Any:
            todo = [prompts[i] for i in idx]
            if self.lm.has("weights"):  # sorted batches, the shared prefix prefilled once (or not)
                it = self.lm.iter_last_logits([self.lm.encode(p) for p in todo], self.batch_size,
                                              share_prefix=self.share_prefix, progress=self.progress)
            else:
                it = self.lm.iter_next_token_logits(todo, self.batch_size, self.progress)
            for sub, rows in it:
                rows = rows.float().cpu().numpy()
                yield [idx[j] for j in sub], [np.asarray(r, dtype=np.float32) for r in rows]

        rows = self._logits.map(prompts, compute)
        if not rows:
            return torch.empty(0, len(self.lm.tokenizer))
        return torch.from_numpy(np.stack(rows).astype(np.float32))

    def logprobs(self, prompts: Sequence[str], completions: Sequence[str], per_token: bool = False) -> Any:
        """As ``lm.logprobs``; per-token log-probabilities cached per (prompt, completion) pair."""
        from lmlab.lm.base import check_pairs

        check_pairs(prompts, completions)
        pairs = list(zip(prompts, completions))
        bs = self.batch_size or int(getattr(self.lm, "batch_size", 8))

        def compute(idx: list[int]) -> Any:
            for s in range(0, len(idx), bs):
                sub = idx[s:s + bs]
                lps = self.lm.logprobs([pairs[i][0] for i in sub], [pairs[i][1] for i in sub], per_token=True)
                yield sub, [t.double().numpy() for t in lps]

        rows = self._lp.map(pairs, compute, keys=[fingerprint(p, c) for p, c in pairs])
        per = [torch.from_numpy(np.asarray(r)).float() for r in rows]
        return per if per_token else torch.stack([r.sum() for r in per]) if per else torch.empty(0)
