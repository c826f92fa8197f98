"""The training-free toy detector of MULI: the first reply token's logit of a refusal-starting token.

An aligned model about to refuse puts mass on tokens such as "Sorry", "Cannot" or "I" as the first
token of its reply. The detector's statistic (``decision_function``, what the metrics rank by) is
that token's raw logit, as in the paper's toy models; with several tokens, their mean logit.
``score`` is a probability: the softmax mass of the token(s), i.e. P(the reply starts with one of them).

A token string that the tokenizer splits is represented by its first sub-token (recorded in
``token_ids`` and in the saved metadata).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lmlab.moderation.base import DetectorError, StudyDetector, ToxicityScorer, check_same_lm
from lmlab.moderation.features import FirstTokenFeatures


def first_token_id(tokenizer: Any, token: str) -> int:
    ids = tokenizer(token, add_special_tokens=False)["input_ids"] if callable(tokenizer) else tokenizer.encode(token)
    if not ids:
        raise DetectorError(f"RefusalTokenDetector: token {token!r} encodes to nothing")
    return int(ids[0])


class RefusalTokenDetector(ToxicityScorer):
    kind = "refusal-token"
    needs_lm = True
    inputs = "logits"

    @classmethod
    def from_study(cls, cfg: Any, features: Any = None) -> list[StudyDetector]:
        """One training-free detector per token of ``cfg.toy_tokens``."""
        def entry(tok: str) -> StudyDetector:
            return StudyDetector(f"refusal-{tok.strip().lower()}", f"toy: logit('{tok}')",
                                 lambda: cls(features, [tok], model_spec=cfg.lm.model), role="toy",
                                 report=lambda d: {("toy_token_ids", tok): int(d.token_ids[0])})

        return [entry(t) for t in cfg.toy_tokens]

    def fit_inputs(self, X: Any, y: Any) -> RefusalTokenDetector:
        return self  # training-free

    def decision_inputs(self, X: np.ndarray) -> np.ndarray:
        return self.decision_logits(X)

    def __init__(self, features: FirstTokenFeatures | None = None, tokens: Sequence[str] = ("Sorry",),
                 token_ids: Sequence[int] | None = None, model_spec: str = "default"):
        if isinstance(tokens, str):
            tokens = (tokens,)
        if not tokens:
            raise DetectorError("RefusalTokenDetector.tokens must name at least one token")
        self.features = features
        self.tokens = tuple(tokens)
        self.model_spec = model_spec
        if token_ids is None:
            if features is None:
                raise DetectorError("RefusalTokenDetector needs features (to find the token ids) or token_ids")
            token_ids = [first_token_id(features.lm.tokenizer, t) for t in self.tokens]
        self.token_ids = np.asarray(token_ids, dtype=np.int64)

    def decision_logits(self, logits: np.ndarray) -> np.ndarray:
        return np.asarray(logits, dtype=np.float64)[:, self.token_ids].mean(1)

    def score_logits(self, logits: np.ndarray) -> np.ndarray:
        x = np.asarray(logits, dtype=np.float64)
        x = x - x.max(1, keepdims=True)
        p = np.exp(x)
        return p[:, self.token_ids].sum(1) / p.sum(1)

    def _logits(self, prompts: Sequence[str]) -> np.ndarray:
        if self.features is None:
            raise DetectorError("RefusalTokenDetector has no model attached; pass features=FirstTokenFeatures(lm, ...)")
        return self.features.logits(prompts)

    def decision_function(self, prompts: Sequence[str]) -> np.ndarray:
        return self.decision_logits(self._logits(prompts))

    def score(self, prompts: Sequence[str]) -> np.ndarray:
        return self.score_logits(self._logits(prompts))

    def meta(self) -> dict[str, Any]:
        feats = self.features.meta if self.features is not None else {}
        return {**feats, "model_spec": self.model_spec, "tokens": list(self.tokens)}

    def _arrays(self) -> dict[str, np.ndarray]:
        return {"token_ids": self.token_ids}

    @classmethod
    def load(cls, path: str | Path, features: FirstTokenFeatures | None = None) -> RefusalTokenDetector:
        meta, arr = cls._read(path)
        if features is not None:
            check_same_lm(meta, features, path)
        det = cls(features, tokens=meta["tokens"], token_ids=arr["token_ids"].tolist(),
                  model_spec=meta.get("model_spec", "default"))
        det.threshold = float(meta.get("threshold", 0.5))
        det.saved_meta = meta
        return det
