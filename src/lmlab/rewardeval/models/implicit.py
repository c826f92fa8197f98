"""Implicit reward from log-probabilities, DPO-style: beta * (log pi(y|x) - log pi_ref(y|x))."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from lmlab.rewardeval.data import transcript_messages
from lmlab.rewardeval.models.base import RewardModel, check_batch

REFERENCES = ("plain", "unconditional", "lm")


class ImplicitRM(RewardModel):
    """DPO's implicit reward ``r(x, y) = beta * [log pi(y | x) - log pi_ref(y | x)]`` (Rafailov et al. 2023).

    The policy pi is ``lm`` with the prompt in its chat template (an HH transcript becomes the chat
    turns). The reference pi_ref is one of:

    - ``"plain"`` (default): the **same model without the chat template** -- the prompt as plain text
      followed by a newline. With one pretrained (instruction-tuned) model this is the nearest thing to
      a reference policy: it measures how much the chat formatting, i.e. the model's instruction
      tuning, raises the response's probability. It is not the SFT model DPO was trained from, so it is
      a stand-in, documented as such;
    - ``"unconditional"``: the same model with no prompt (BOS only), i.e. the pointwise mutual
      information ``log pi(y|x) - log pi(y)``;
    - ``"lm"``: another LM ``ref_lm`` with the same chat formatting (the DPO setting: policy vs its
      reference, e.g. an SFT checkpoint).

    ``normalize="mean"`` divides each log-ratio by the response's token count (length-normalised, as in
    SimPO-style rewards); the default ``"sum"`` is DPO's. An empty response gets 0 (both log-probs of
    an empty string are 0). Two forward passes per response.
    """

    name = "implicit"
    needs_lm = True
    # The reward is the model with its chat template against the model without it, from exact log-probabilities
    # of the response's tokens: the model must run here. An HTTP endpoint applies its template on the server and
    # shows none here (``chat_prompt`` would fall back to a made-up "user:/assistant:" transcript), and its
    # prompt log-probabilities depend on the server (``echo``; Ollama has none, and none for a first token).
    lm_needs = ("logits",)

    def __init__(self, lm: Any, reference: str = "plain", ref_lm: Any = None, beta: float = 1.0,
                 normalize: str = "sum"):
        if reference not in REFERENCES:
            raise ValueError(f"reference must be one of {', '.join(REFERENCES)}, got {reference!r}")
        if reference == "lm" and ref_lm is None:
            raise ValueError("reference='lm' needs ref_lm, the reference model")
        if normalize not in ("sum", "mean"):
            raise ValueError(f"normalize must be 'sum' or 'mean', got {normalize!r}")
        self.lm, self.reference, self.ref_lm, self.beta, self.normalize = lm, reference, ref_lm, beta, normalize

    @classmethod
    def from_spec(cls, arg: str = "", lm: Any = None, **kwargs: Any) -> ImplicitRM:
        return cls(lm, reference=arg, **kwargs) if arg else cls(lm, **kwargs)

    def policy_prompt(self, prompt: str, lm: Any = None) -> str:
        return (lm or self.lm).chat_prompt(transcript_messages(prompt))

    def reference_prompt(self, prompt: str) -> str:
        if self.reference == "plain":
            return prompt.rstrip() + "\n"
        if self.reference == "unconditional":
            return ""
        return self.policy_prompt(prompt, self.ref_lm)

    def _logprobs(self, lm: Any, prompts: list[str], responses: list[str]) -> np.ndarray:
        if self.normalize == "sum":
            return lm.logprobs(prompts, responses).double().numpy()
        return np.array([float(t.double().mean()) for t in lm.logprobs(prompts, responses, per_token=True)])

    def score_batch(self, prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
        check_batch(prompts, responses)
        out = np.zeros(len(prompts))
        keep = [i for i, r in enumerate(responses) if r.strip()]
        if not keep:
            return out
        resp = [responses[i] for i in keep]
        lp = self._logprobs(self.lm, [self.policy_prompt(prompts[i]) for i in keep], resp)
        ref_lm = self.ref_lm if self.reference == "lm" else self.lm
        lr = self._logprobs(ref_lm, [self.reference_prompt(prompts[i]) for i in keep], resp)
        out[keep] = self.beta * (lp - lr)
        return out
