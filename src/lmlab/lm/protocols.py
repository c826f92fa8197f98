"""What an LM can do, declared: four capabilities, each a :class:`typing.Protocol`.

A caller asks for what it needs when it loads a model, and gets a one-line error at load time when the
backend lacks it, instead of an ``AttributeError`` (or a silent fallback) deep inside a study::

    lm = load_lm(spec, needs=("weights",))     # LMError for an HTTP endpoint, before anything is loaded

===============  ======================================================================================
capability       what the backend provides (protocol)
===============  ======================================================================================
``"text"``       ``generate``, ``chat_prompt``, ``logprobs`` (:class:`TextLM`; every backend)
``"logits"``     ``next_token_logits`` over the full vocabulary, ``iter_next_token_logits``
                 (:class:`LogitsLM`)
``"weights"``    ``encode``, ``forward_ids``, ``forward``, ``n_layers``, ``output_projections``,
                 ``record`` (forward hooks), ``iter_last_logits`` (prefill with a shared-prefix KV
                 cache) (:class:`WeightsLM`)
``"trainable"``  ``hf_model`` and ``hf_tokenizer``: the underlying ``transformers`` model and tokenizer,
                 for peft / TRL (:class:`TrainableLM`)
===============  ======================================================================================

Each backend class lists its capabilities in ``capabilities`` (a class attribute, so :func:`lmlab.lm.load_lm`
can refuse a spec before loading any weights). ``fingerprint`` (every backend) is a short hash that
identifies the model's weights, for cache keys.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol, runtime_checkable

CAPABILITIES = ("text", "logits", "weights", "trainable")


@runtime_checkable
class TextLM(Protocol):
    """Text in, text or log-probabilities out. Every backend (HTTP endpoints included)."""

    name: str

    @property
    def fingerprint(self) -> str: ...

    @property
    def tokenizer(self) -> Any: ...

    def logprobs(self, prompts: Sequence[str], completions: Sequence[str], per_token: bool = False) -> Any: ...

    def generate(self, prompts: Sequence[str], max_new_tokens: int = 32, temperature: float = 0.0,
                 top_p: float = 1.0, seed: int | None = None, stop: Sequence[str] = ()) -> list[str]: ...

    def chat_prompt(self, messages: Any, system: str | None = None) -> str: ...


@runtime_checkable
class LogitsLM(TextLM, Protocol):
    """Full-vocabulary next-token logits (backends that run the model here, or a deterministic fake)."""

    def next_token_logits(self, prompts: Sequence[str]) -> Any: ...

    def iter_next_token_logits(self, prompts: Sequence[str], batch_size: int | None = None,
                               progress: bool = False) -> Iterator[tuple[list[int], Any]]:
        """Yield ``(indices, logits (len(indices), vocab))`` batch by batch, in any order of the prompts."""
        ...


@runtime_checkable
class WeightsLM(LogitsLM, Protocol):
    """A model whose weights are here: token ids in, activations out."""

    device: Any

    @property
    def n_layers(self) -> int: ...

    def encode(self, text: str) -> list[int]: ...

    def forward_ids(self, seqs: Sequence[Sequence[int]], last_only: bool = False) -> tuple[Any, Any]: ...

    def forward(self, prompts: Sequence[str]) -> tuple[Any, Any]: ...

    def output_projections(self) -> list[Any]:
        """Per layer, the attention output projection W_O as a (n_heads * d_head, d_model) float tensor."""
        ...

    def record(self, attn: bool = True, values: bool = False, resid: bool = False,
               layers: Sequence[int] | None = None) -> AbstractContextManager[Any]: ...

    def iter_last_logits(self, seqs: Sequence[Sequence[int]], batch_size: int | None = None,
                         share_prefix: bool = True, progress: bool = False) -> Iterator[tuple[list[int], Any]]:
        """Last-position logits of token sequences, batch by batch; a common prefix is prefilled once."""
        ...


@runtime_checkable
class TrainableLM(WeightsLM, Protocol):
    """The underlying ``transformers`` objects, for peft (LoRA) and TRL (DPO): no private attributes needed."""

    @property
    def hf_model(self) -> Any: ...

    @property
    def hf_tokenizer(self) -> Any: ...


PROTOCOLS: dict[str, type] = {"text": TextLM, "logits": LogitsLM, "weights": WeightsLM, "trainable": TrainableLM}
