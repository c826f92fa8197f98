"""A Hugging Face sequence-classification reward model (e.g. Skywork-Reward, ArmoRM-style heads)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lmlab.rewardeval.data import transcript_messages
from lmlab.rewardeval.models.base import RewardModel, check_batch


class HFClassifierRM(RewardModel):
    """Reward = the classifier head's output on the conversation (prompt + response).

    The conversation is formatted with the tokenizer's chat template when it has one (how such RMs
    are trained), else as ``prompt\\n\\nresponse``. One logit (``num_labels=1``, the usual RM head) is
    the reward; with two labels the reward is ``logit[1] - logit[0]``. Batched with padding; the model
    reads the last non-padding token (transformers' own pooling for ``*ForSequenceClassification``).
    """

    name = "hf"

    def __init__(self, model: Any, tokenizer: Any, device: str = "cpu", batch_size: int = 8, max_length: int = 4096):
        import torch

        self.model = model.to(device).eval()
        self.tokenizer = tokenizer
        self.device = torch.device(device)
        self.batch_size, self.max_length = batch_size, max_length
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token if tokenizer.eos_token is not None else tokenizer.unk_token
        if getattr(model.config, "pad_token_id", None) is None:
            model.config.pad_token_id = tokenizer.pad_token_id
        n = int(getattr(model.config, "num_labels", 1))
        if n not in (1, 2):
            raise ValueError(f"a reward model head needs 1 or 2 labels, this one has {n}")

    @property
    def fingerprint(self) -> str:
        from lmlab.lm.base import model_fingerprint

        return model_fingerprint(self.spec or self.name, self.tokenizer, list(self.model.parameters()))

    @classmethod
    def from_spec(cls, arg: str = "", lm: Any = None, **kwargs: Any) -> HFClassifierRM:
        return cls.from_pretrained(arg, **kwargs)

    @classmethod
    def from_study(cls, arg: str, lm: Any, cfg: Any) -> HFClassifierRM:
        """Loaded on the study's device with its batch size (``cfg.lm``)."""
        return cls.from_pretrained(arg, device=cfg.lm.device, batch_size=cfg.lm.batch_size)

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str = "cpu", batch_size: int = 8, **kwargs: Any) -> HFClassifierRM:
        from lmlab.lm import LMError
        from lmlab.lm.hf import import_transformers

        if not str(path):
            raise LMError("--rm hf:PATH needs the path of a local Hugging Face reward-model directory")
        tf = import_transformers()
        p = Path(path).expanduser()
        if p.exists() and not (p / "config.json").exists():
            raise LMError(f"{p} is not a Hugging Face model directory (no config.json in it)")
        try:
            tok = tf.AutoTokenizer.from_pretrained(str(path))
            model = tf.AutoModelForSequenceClassification.from_pretrained(str(path), **kwargs)
        except OSError as e:
            raise LMError(f"cannot load reward model '{path}': {str(e).splitlines()[0]}") from None
        return cls(model, tok, device=device, batch_size=batch_size)

    def text(self, prompt: str, response: str) -> str:
        tok = self.tokenizer
        if getattr(tok, "chat_template", None):
            msgs = transcript_messages(prompt) + [{"role": "assistant", "content": response}]
            return tok.apply_chat_template(msgs, tokenize=False)
        return f"{prompt}\n\n{response}"

    def score_batch(self, prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
        import torch

        check_batch(prompts, responses)
        texts = [self.text(p, r) for p, r in zip(prompts, responses)]
        out = []
        for i in range(0, len(texts), self.batch_size):
            enc = self.tokenizer(texts[i:i + self.batch_size], padding=True, truncation=True,
                                 max_length=self.max_length, return_tensors="pt").to(self.device)
            with torch.no_grad():
                logits = self.model(**enc).logits.float()
            out.append(logits[:, 0] if logits.shape[1] == 1 else logits[:, 1] - logits[:, 0])
        return torch.cat(out).cpu().numpy().astype(float) if out else np.zeros(0)
