"""Reward models behind one interface, :class:`RewardModel` (``score(prompt, response) -> float``).

One file and one registry line per adapter. A spec string ``name`` or ``name:argument`` builds one
with :func:`build_rm` (the CLI's ``--rm``); a study builds each with ``cls.from_study(arg, lm, cfg)``,
so a new adapter needs no change to the study. ``needs_lm`` is a class attribute: whether the
adapter scores through an :class:`lmlab.lm.LM` (the study loads one only then).

==================  ==========================================================================
``length``          response length in characters (the trivial baseline)
``judge``           LLM-as-judge, absolute: log-odds of "Yes" to "is this answer correct?"
``judge-pairwise``  LLM-as-judge, pairwise: P(this response beats an anchor answer); ``compare``
``implicit``        DPO-style implicit reward, log pi(y|x) - log pi_ref(y|x) through ``lmlab.lm``
``hf:PATH``         a Hugging Face sequence-classification reward model (local directory)
``random:SEED``     a reward that ignores the response's quality (hash of seed, prompt, response):
                    the null reward model of the reward-eval study's control
==================  ==========================================================================
"""

from __future__ import annotations

from typing import Any

from lmlab.registry import Registry
from lmlab.rewardeval.models.base import RewardModel

__all__ = ["RewardModel", "REWARD_MODELS", "build_rm", "rm_class"]

REWARD_MODELS = Registry("reward model", {
    "length": "lmlab.rewardeval.models.length:LengthRM",
    "judge": "lmlab.rewardeval.models.judge:JudgeRM",
    "judge-pairwise": "lmlab.rewardeval.models.pairwise_judge:PairwiseJudgeRM",
    "implicit": "lmlab.rewardeval.models.implicit:ImplicitRM",
    "hf": "lmlab.rewardeval.models.hf_classifier:HFClassifierRM",
    "random": "lmlab.rewardeval.models.random_rm:RandomRM",
})


def rm_class(spec: str) -> tuple[type[RewardModel], str]:
    """The class registered for ``name`` of a ``name`` or ``name:argument`` spec, and the argument
    (:class:`lmlab.registry.UnknownName` for an unknown name). Ask the class, e.g. ``cls.needs_lm``."""
    name, _, arg = spec.partition(":")
    return REWARD_MODELS.get(name), arg


def build_rm(spec: str, lm: Any = None, **kwargs: Any) -> RewardModel:
    """Build a reward model from ``name`` or ``name:argument`` (see the module table)."""
    cls, arg = rm_class(spec)
    rm = cls.from_spec(arg, lm=lm, **kwargs)
    rm.spec = spec
    return rm
