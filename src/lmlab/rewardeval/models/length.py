"""The trivial baseline: longer is better."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lmlab.rewardeval.models.base import RewardModel, check_batch


class LengthRM(RewardModel):
    """Reward = the response's length in characters (whitespace at the ends ignored).

    >>> LengthRM().score("Why?", " Because. ")
    8.0
    """

    name = "length"

    def score_batch(self, prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
        check_batch(prompts, responses)
        return np.array([len(r.strip()) for r in responses], dtype=float)
