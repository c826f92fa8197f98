"""The reward-model interface every adapter implements."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np


class RewardModel:
    """A scalar reward for a response to a prompt: higher is better.

    Subclasses implement :meth:`score_batch` (batched, for speed); :meth:`score` is one call of it.
    Pairwise judges also implement :meth:`compare`; for the others it is the score difference.
    """

    name: ClassVar[str] = "rm"
    #: True for adapters that score through an ``lmlab.lm.LM`` (the study loads one for them)
    needs_lm: ClassVar[bool] = False
    #: the capabilities (:mod:`lmlab.lm.protocols`) it asks of that LM beyond ``text``; the study checks them
    #: from the model's spec before anything is loaded, generated or written (``Study.check_lm``)
    lm_needs: ClassVar[tuple[str, ...]] = ()

    #: modules (besides the adapter's own and this one) whose code decides the scores: part of the cache key
    code: ClassVar[tuple[str, ...]] = ()
    #: the spec string it was built from (``build_rm`` sets it)
    spec: str = ""

    @classmethod
    def from_spec(cls, arg: str = "", lm: Any = None, **kwargs: Any) -> RewardModel:
        return cls(**kwargs) if not cls.needs_lm else cls(lm, **kwargs)

    @classmethod
    def from_study(cls, arg: str, lm: Any, cfg: Any) -> RewardModel:
        """Build for a study from the spec's argument, the study's LM (None unless ``needs_lm``) and its
        config (an ``lm`` section with ``device`` and ``batch_size``); default: :meth:`from_spec`."""
        return cls.from_spec(arg, lm=lm)
    @property
    def fingerprint(self) -> str:
        """What identifies the scores besides the code: the spec and the fingerprints of the LMs it scores with."""
        from lmlab.io import fingerprint

        lms = [getattr(self, a, None) for a in ("lm", "ref_lm")]
        return fingerprint(type(self).__name__, self.spec or self.name, [m.fingerprint for m in lms if m is not None])

    def code_modules(self) -> tuple[str, ...]:
        mods = [__name__, type(self).__module__, *self.code]
        lm = getattr(self, "lm", None)
        if lm is not None:
            from lmlab.lm.caching import lm_code

            mods += lm_code(lm)
        return tuple(mods)

    def score(self, prompt: str, response: str) -> float:
        return float(self.score_batch([prompt], [response])[0])

    def score_batch(self, prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
        raise NotImplementedError

    def compare(self, prompts: Sequence[str], responses_1: Sequence[str], responses_2: Sequence[str]) -> np.ndarray:
        """Preference margins for response_1 over response_2 (> 0: response_1 is preferred)."""
        n = len(prompts)
        s = self.score_batch(list(prompts) * 2, list(responses_1) + list(responses_2))
        return s[:n] - s[n:]


def check_batch(prompts: Sequence[str], responses: Sequence[str]) -> None:
    if isinstance(prompts, str) or isinstance(responses, str):
        raise TypeError("prompts and responses must be sequences of strings; use score() for one pair")
    if len(prompts) != len(responses):
        raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
