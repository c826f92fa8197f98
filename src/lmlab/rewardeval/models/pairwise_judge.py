"""LLM-as-judge, pairwise: which of two answers is better (both orders, to cancel position bias)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from lmlab.rewardeval.models._lm_utils import log_odds
from lmlab.rewardeval.models.base import RewardModel, check_batch

PAIR_TEMPLATE = ("Here is a question and two answers to it.\n\nQuestion: {prompt}\n\nAnswer A: {a}\n\n"
                 "Answer B: {b}\n\n{question} Reply with A or B.")


class PairwiseJudgeRM(RewardModel):
    """``compare`` = the judge's log-odds of "A" over "B", averaged over both orders of the pair:
    ``(L(r1 as A, r2 as B) - L(r2 as A, r1 as B)) / 2`` (> 0: response_1 preferred). A judge that always
    says "A" scores 0 on every pair instead of looking right on half of them.

    ``score(prompt, response)`` fits the one-response interface the Arena-Hard way: the margin of the
    response against a fixed ``anchor`` answer (spec ``judge-pairwise:ANCHOR``; default "I don't know.").
    Two forward passes per pair.
    """

    name = "judge-pairwise"
    needs_lm = True
    code = ("lmlab.rewardeval.models._lm_utils",)

    def __init__(self, lm: Any, anchor: str = "I don't know.", question: str = "Which answer is better?",
                 template: str = PAIR_TEMPLATE):
        for key in ("{prompt}", "{a}", "{b}", "{question}"):
            if key not in template:
                raise ValueError(f"pairwise judge template must contain {key}")
        self.lm, self.anchor, self.question, self.template = lm, anchor, question, template

    @classmethod
    def from_spec(cls, arg: str = "", lm: Any = None, **kwargs: Any) -> PairwiseJudgeRM:
        return cls(lm, anchor=arg, **kwargs) if arg else cls(lm, **kwargs)

    def _prompt(self, prompt: str, a: str, b: str) -> str:
        return self.lm.chat_prompt(self.template.format(prompt=prompt.strip(), a=a.strip(), b=b.strip(),
                                                        question=self.question))

    def compare(self, prompts: Sequence[str], responses_1: Sequence[str], responses_2: Sequence[str]) -> np.ndarray:
        check_batch(prompts, responses_1)
        check_batch(prompts, responses_2)
        n = len(prompts)
        if not n:
            return np.zeros(0)
        texts = [self._prompt(p, a, b) for p, a, b in zip(prompts, responses_1, responses_2)]
        texts += [self._prompt(p, b, a) for p, a, b in zip(prompts, responses_1, responses_2)]
        # lower-case spellings too (a character vocabulary may lack capitals); a constant pull towards
        # the article "a" cancels in the two-order difference below
        lo = log_odds(self.lm, texts, ("A", " A", "a"), ("B", " B", "b"))
        return (lo[:n] - lo[n:]) / 2

    def score_batch(self, prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
        check_batch(prompts, responses)
        return self.compare(prompts, responses, [self.anchor] * len(prompts))
