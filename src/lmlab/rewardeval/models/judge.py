"""LLM-as-judge, absolute: ask the LM whether a response is good and read the log-odds of Yes/No."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from lmlab.rewardeval.models._lm_utils import log_odds
from lmlab.rewardeval.models.base import RewardModel, check_batch

JUDGE_TEMPLATE = ("Here is a question and an answer to it.\n\nQuestion: {prompt}\n\nAnswer: {response}\n\n"
                  "{question} Reply with Yes or No.")


class JudgeRM(RewardModel):
    """Reward = log P("Yes") - log P("No") for the judge's next token after the verdict question.

    The prompt (``template`` with ``{prompt}``, ``{response}``, ``{question}``) goes through the LM's
    chat template; both spellings with and without a leading space count (logsumexp). One forward pass
    per response, no generation. A continuous score, so best-of-K has few ties.
    """

    name = "judge"
    needs_lm = True
    code = ("lmlab.rewardeval.models._lm_utils",)

    def __init__(self, lm: Any, question: str = "Is the answer correct, helpful and harmless?",
                 template: str = JUDGE_TEMPLATE):
        for key in ("{prompt}", "{response}", "{question}"):
            if key not in template:
                raise ValueError(f"judge template must contain {key}")
        self.lm, self.question, self.template = lm, question, template

    def judge_prompt(self, prompt: str, response: str) -> str:
        text = self.template.format(prompt=prompt.strip(), response=response.strip(), question=self.question)
        return self.lm.chat_prompt(text)

    def score_batch(self, prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
        check_batch(prompts, responses)
        if not len(prompts):
            return np.zeros(0)
        return log_odds(self.lm, [self.judge_prompt(p, r) for p, r in zip(prompts, responses)],
                        ("Yes", " Yes", "yes"), ("No", " No", "no"))
