"""The null reward model: a reward that knows nothing about the response (the reward-eval study's control).

The reward is a uniform number in [0, 1) fixed by a hash of ``(seed, prompt, response)``, so it is
reproducible and independent of how good the response is. ``random:SEED`` picks the seed.

>>> rm = RandomRM(seed=0)
>>> rm.score("2+2?", "4") == rm.score("2+2?", "4")
True
>>> 0 <= rm.score("2+2?", "4") < 1
True
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from lmlab.rewardeval.models.base import RewardModel, check_batch


class RandomRM(RewardModel):
    name = "random"

    def __init__(self, seed: int = 0):
        self.seed = int(seed)

    @classmethod
    def from_spec(cls, arg: str = "", lm: Any = None, **kwargs: Any) -> RandomRM:
        return cls(seed=int(arg) if arg else 0)

    def score_batch(self, prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
        check_batch(prompts, responses)
        out = []
        for p, r in zip(prompts, responses):
            h = hashlib.sha256(f"{self.seed}\x00{p}\x00{r}".encode()).digest()
            out.append(int.from_bytes(h[:8], "big") / 2**64)
        return np.array(out, dtype=float)
