"""Reward models behind one interface, :class:`RewardModel` (``score(prompt, response) -> float``).

One file and one registry line per adapter. A spec string ``name`` or ``name:argument`` builds one
with :func:`build_rm` (the CLI's ``--rm``):

==================  ==========================================================================
``length``          response length in characters (the trivial baseline)
``judge``           LLM-as-judge, absolute: log-odds of "Yes" to "is this answer correct?"
``judge-pairwise``  LLM-as-judge, pairwise: P(this response beats an anchor answer); ``compare``
``implicit``        DPO-style implicit reward, log pi(y|x) - log pi_ref(y|x) through ``lmlab.lm``
``hf:PATH``         a Hugging Face sequence-classification reward model (local directory)
==================  ==========================================================================
"""

from __future__ import annotations

from typing import Any

from lmlab.registry import Registry
from lmlab.rewardeval.models.base import RewardModel

__all__ = ["RewardModel", "REWARD_MODELS", "build_rm", "needs_lm"]

REWARD_MODELS = Registry("reward model", {
    "length": "lmlab.rewardeval.models.length:LengthRM",
    "judge": "lmlab.rewardeval.models.judge:JudgeRM",
    "judge-pairwise": "lmlab.rewardeval.models.pairwise_judge:PairwiseJudgeRM",
    "implicit": "lmlab.rewardeval.models.implicit:ImplicitRM",
    "hf": "lmlab.rewardeval.models.hf_classifier:HFClassifierRM",
})


def needs_lm(spec: str) -> bool:
    """Whether the RM named by ``spec`` scores through an :class:`lmlab.lm.LM`."""
    return bool(getattr(REWARD_MODELS.get(spec.partition(":")[0]), "needs_lm", False))


def build_rm(spec: str, lm: Any = None, **kwargs: Any) -> RewardModel:
    """Build a reward model from ``name`` or ``name:argument`` (see the module table)."""
    name, _, arg = spec.partition(":")
    cls = REWARD_MODELS.get(name)
    rm = cls.from_spec(arg, lm=lm, **kwargs)
    rm.spec = spec
    return rm
