"""Hugging Face backend: any ``transformers`` causal LM, wrapped, never reimplemented.

Batches are left-padded; the attention mask and position ids (``cumsum(mask) - 1``) make a padded
batch give the same logits as the prompts one by one (a test checks it on a tiny random Llama).

:meth:`HFLM.record` registers forward hooks on the model's own modules (decoder layers, their
attention module and its ``v_proj``) and removes them in ``finally``::

    with lm.record(attn=True, values=True, resid=True) as rec:
        lm.forward(["The cat sat on the mat."])
    rec.attn[3]      # (batch, head, query, key) attention probabilities of layer 3
    rec.values[3]    # (batch, pos, kv_head, d_head) value states of layer 3
    rec.resid[3]     # (batch, pos, d_model) residual stream after layer 3

Attention probabilities need the eager attention path; ``record(attn=True)`` switches the model
to it for the duration and back afterwards.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from lmlab.lm.base import LM, LMError, check_pairs, cut_at_stop, model_fingerprint

LLM_EXTRA = "pip install -e '.[llm]'  (or: pip install transformers gguf accelerate safetensors)"


def import_transformers() -> Any:
    try:
        import transformers
    except ImportError:
        raise LMError(f"the pretrained-LM backend needs the 'llm' extra: {LLM_EXTRA}") from None
    return transformers


# -- locating the parts of a decoder-only model that we hook --------------------------------------
_LAYER_PATHS = ("model.layers", "model.decoder.layers", "transformer.h", "gpt_neox.layers", "transformer.blocks")
_ATTN_NAMES = ("self_attn", "attn", "attention")
_VALUE_NAMES = ("v_proj", "value")
_OUT_NAMES = ("o_proj", "out_proj", "dense", "c_proj")


def _get(obj: Any, path: str) -> Any:
    for part in path.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


def decoder_layers(model: Any) -> list[Any]:
    for path in _LAYER_PATHS:
        layers = _get(model, path)
        if layers is not None:
            return list(layers)
    raise LMError(f"cannot find the decoder layers of {type(model).__name__}; looked for {', '.join(_LAYER_PATHS)}")


def _child(module: Any, names: Sequence[str], what: str) -> Any:
    for n in names:
        m = getattr(module, n, None)
        if m is not None:
            return m
    raise LMError(f"{type(module).__name__} has no {what} submodule (looked for {', '.join(names)})")


@dataclass
class Recording:
    """What :meth:`HFLM.record` captured, per layer index. Each forward call appends along the batch."""

    attn: dict[int, torch.Tensor] = field(default_factory=dict)
    values: dict[int, torch.Tensor] = field(default_factory=dict)
    resid: dict[int, torch.Tensor] = field(default_factory=dict)

    def _add(self, store: dict[int, torch.Tensor], layer: int, x: torch.Tensor) -> None:
        x = x.detach().float().cpu()
        if layer in store:
            if store[layer].shape[1:] != x.shape[1:]:
                raise LMError("record(): forward calls with different sequence lengths cannot be stacked; "
                              "record one batch of equal-length inputs at a time")
            x = torch.cat([store[layer], x])
        store[layer] = x


class HFLM(LM):
    """A ``transformers`` causal LM and its tokenizer behind the :class:`LM` interface.

    It has every capability of :mod:`lmlab.lm.protocols`: text, logits, weights and trainable
    (``hf_model`` / ``hf_tokenizer`` are the ``transformers`` objects themselves, for peft and TRL).
    """

    capabilities = frozenset({"text", "logits", "weights", "trainable"})
    backend = "the Hugging Face backend"

    def __init__(self, model: Any, tokenizer: Any, device: str = "cpu", batch_size: int = 8, name: str = "hf"):
        self.model = model.to(device).eval()
        self._tokenizer = tokenizer
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.name = name
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token if tokenizer.eos_token is not None else tokenizer.unk_token
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    @classmethod
    def from_pretrained(cls, path_or_id: str | Path, device: str = "cpu", dtype: str = "float32",
                        batch_size: int = 8, attn_implementation: str = "sdpa", **kwargs: Any) -> HFLM:
        """Load a local Hugging Face model directory (or a hub id, where the user has network)."""
        tf = import_transformers()
        path = Path(path_or_id).expanduser()
        if path.exists() and not (path / "config.json").exists():
            raise LMError(f"{path} is not a Hugging Face model directory (no config.json in it)")
        try:
            tok = tf.AutoTokenizer.from_pretrained(str(path_or_id), **kwargs)
            model = tf.AutoModelForCausalLM.from_pretrained(
                str(path_or_id), dtype=getattr(torch, dtype), attn_implementation=attn_implementation, **kwargs)
        except OSError as e:
            raise LMError(f"cannot load Hugging Face model '{path_or_id}': {str(e).splitlines()[0]}") from None
        return cls(model, tok, device=device, batch_size=batch_size, name=str(path_or_id))

    # -- tokenization and batching ---------------------------------------------------------------
    @property
    def tokenizer(self) -> Any:
        return self._tokenizer

    @property
    def hf_model(self) -> Any:
        """The ``transformers`` model (``PreTrainedModel``): wrap it with peft, hand it to TRL."""
        return self.model

    @property
    def hf_tokenizer(self) -> Any:
        """The ``transformers`` tokenizer (its pad token set)."""
        return self._tokenizer

    @property
    def fingerprint(self) -> str:
        """Name, vocabulary size, parameter count and sampled first/last weights, hashed (16 hex digits)."""
        return model_fingerprint(self.name, self._tokenizer, list(self.model.parameters()))

    @property
    def n_layers(self) -> int:
        return len(decoder_layers(self.model))

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``; special tokens (BOS) are added unless the text already starts with BOS."""
        tok = self._tokenizer
        special = not (tok.bos_token and text.startswith(tok.bos_token))
        return list(tok(text, add_special_tokens=special)["input_ids"])

    def pad_left(self, seqs: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """input_ids, attention_mask, position_ids for left-padded ``seqs``; positions count real tokens only."""
        if any(len(s) == 0 for s in seqs):
            raise ValueError("empty prompt: every sequence needs at least one token")
        T = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), T), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), T), dtype=torch.long)
        for i, s in enumerate(seqs):
            ids[i, T - len(s):] = torch.tensor(list(s), dtype=torch.long)
            mask[i, T - len(s):] = 1
        pos = (mask.cumsum(-1) - 1).clamp_min(0)
        return ids.to(self.device), mask.to(self.device), pos.to(self.device)

    @torch.no_grad()
    def forward_ids(self, seqs: Sequence[Sequence[int]], last_only: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """One left-padded forward pass over token-id sequences: logits (B, T, V) and the mask (B, T).

        ``last_only=True`` computes the unembedding at the last position only (logits (B, 1, V)): with a
        49k vocabulary that is a quarter of SmolLM2's forward pass saved.
        """
        ids, mask, pos = self.pad_left(seqs)
        kwargs: dict[str, Any] = dict(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=False)
        if last_only and self._keeps_logits:
            kwargs["logits_to_keep"] = 1
        out = self.model(**kwargs)
        return out.logits.float(), mask

    @property
    def _keeps_logits(self) -> bool:
        import inspect

        return "logits_to_keep" in inspect.signature(self.model.forward).parameters

    def forward(self, prompts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """One forward pass over ``prompts`` (one batch, no splitting): logits (B, T, V) and mask (B, T)."""
        return self.forward_ids([self.encode(p) for p in _seq(prompts)])

    def _chunks(self, n: int) -> Iterator[slice]:
        for i in range(0, n, self.batch_size):
            yield slice(i, min(i + self.batch_size, n))

    def output_projections(self) -> list[torch.Tensor]:
        """Per layer, the attention output projection W_O as (n_heads * d_head, d_model), float32 on the CPU
        (the transpose of the ``nn.Linear`` weight, so ``z @ W_O`` is what the layer adds to the residual)."""
        out = []
        for layer in decoder_layers(self.model):
            attn = _child(layer, _ATTN_NAMES, "attention")
            proj = _child(attn, _OUT_NAMES, "attention output projection")
            w = getattr(proj, "weight", None)
            if w is None or w.dim() != 2:
                raise LMError(f"{type(attn).__name__}'s output projection has no 2-d weight")
            # nn.Linear stores (out, in); GPT-2's Conv1D stores (in, out)
            out.append((w.T if isinstance(proj, torch.nn.Linear) else w).detach().float().cpu())
        return out

    @torch.no_grad()
    def iter_last_logits(self, seqs: Sequence[Sequence[int]], batch_size: int | None = None,
                         share_prefix: bool = True, progress: bool = False) -> Iterator[tuple[list[int], torch.Tensor]]:
        """Last-position logits of token sequences: yields ``(indices, logits (n, vocab))`` per batch.

        Batches hold sequences of similar length (sorted by token count: less padding). Chat prompts share a
        long prefix (system prompt, user-turn header: about 30 of SmolLM2's tokens); with ``share_prefix`` its
        key/value cache is computed once and every batch runs only the rest, the same causal computation (a
        test checks the logits against the plain forward pass). A prefix shorter than 4 tokens is not worth it.
        """
        import numpy as np

        bs = batch_size or self.batch_size
        seqs = [list(s) for s in seqs]
        order = np.argsort([len(s) for s in seqs], kind="stable")
        batches: Any = [order[i:i + bs] for i in range(0, len(order), bs)]
        prefix: list[int] = common_prefix(seqs) if share_prefix and len(seqs) > 1 else []
        if len(prefix) < 4:
            prefix = []
        past = self._prefill(prefix) if prefix else None
        if progress:
            from tqdm import tqdm

            batches = tqdm(batches, desc="first-token logits", unit="batch", leave=False)
        for b in batches:
            if past is not None:
                rows = self._forward_after_prefix(past, len(prefix), [seqs[j][len(prefix):] for j in b])
            else:
                logits, _ = self.forward_ids([seqs[j] for j in b], last_only=True)
                rows = logits[:, -1]
            yield [int(j) for j in b], rows.float().cpu()

    def _prefill(self, prefix: list[int]) -> Any:
        out = self.model(input_ids=torch.tensor([prefix], device=self.device), use_cache=True)
        # transformers >= 5.2x names it `cache` (older: `past_key_values`)
        return getattr(out, "cache", None) or getattr(out, "past_key_values", None)

    def _forward_after_prefix(self, past: Any, p: int, rest: list[list[int]]) -> torch.Tensor:
        """Logits at the last position of prefix + rest[i], reusing the prefix's key/value cache."""
        import copy
        import inspect

        ids, mask, _ = self.pad_left(rest)
        B = ids.shape[0]
        cache = copy.deepcopy(past)
        cache.batch_repeat_interleave(B)
        full = torch.cat([torch.ones((B, p), dtype=mask.dtype, device=mask.device), mask], dim=1)
        pos = p + (mask.cumsum(-1) - 1).clamp_min(0)
        key = "cache" if "cache" in inspect.signature(self.model.forward).parameters else "past_key_values"
        kwargs: dict[str, Any] = dict(input_ids=ids, attention_mask=full, position_ids=pos, use_cache=True)
        kwargs[key] = cache
        if self._keeps_logits:
            kwargs["logits_to_keep"] = 1
        return self.model(**kwargs).logits[:, -1].float()

    def iter_next_token_logits(self, prompts: Sequence[str], batch_size: int | None = None,
                               progress: bool = False) -> Iterator[tuple[list[int], torch.Tensor]]:
        """Next-token logits batch by batch, through :meth:`iter_last_logits` (sorted, shared prefix)."""
        return self.iter_last_logits([self.encode(p) for p in _seq(prompts)], batch_size, progress=progress)

    # -- the LM interface --------------------------------------------------------------------------
    def next_token_logits(self, prompts: Sequence[str]) -> torch.Tensor:
        seqs = [self.encode(p) for p in _seq(prompts)]
        out = []
        for sl in self._chunks(len(seqs)):
            logits, _ = self.forward_ids(seqs[sl], last_only=True)
            out.append(logits[:, -1].cpu())
        return torch.cat(out) if out else torch.empty(0, len(self._tokenizer))

    def logprobs(self, prompts: Sequence[str], completions: Sequence[str], per_token: bool = False) -> Any:
        check_pairs(prompts, completions)
        ctx = [self.encode(p) for p in prompts]
        cont = [list(self._tokenizer(c, add_special_tokens=False)["input_ids"]) for c in completions]
        if any(len(c) == 0 for c in cont):
            raise ValueError("empty completion: logprobs needs at least one completion token")
        if any(len(c) == 0 for c in ctx):
            raise ValueError("empty prompt (and no BOS token): the first completion token has nothing to be "
                             "conditioned on; pass a non-empty prompt")
        results: list[torch.Tensor] = []
        for sl in self._chunks(len(ctx)):
            seqs = [a + b for a, b in zip(ctx[sl], cont[sl])]
            logits, _ = self.forward_ids(seqs)
            logp = torch.log_softmax(logits, dim=-1).cpu()
            T = logits.shape[1]
            for row, c in enumerate(cont[sl]):
                # with left padding the sequence ends at T-1; completion token j sits at T - len(c) + j
                positions = torch.arange(T - len(c), T)
                results.append(logp[row, positions - 1, torch.tensor(c)])
        return results if per_token else torch.stack([r.sum() for r in results])

    #: "engine": generate through lmlab.lm.engine (static KV cache, batched; greedy outputs identical to
    #: transformers'), falling back to transformers' generate where it does not apply; "hf": always transformers'
    generate_with: str = "engine"

    def engine(self, precision: str = "float32") -> Any:
        """The fast decoding engine over this model (:mod:`lmlab.lm.engine`), or None where it does not apply."""
        from lmlab.lm.engine import engine_for

        return engine_for(self, precision)

    @torch.no_grad()
    def generate(self, prompts: Sequence[str], max_new_tokens: int = 32, temperature: float = 0.0,
                 top_p: float = 1.0, seed: int | None = None, stop: Sequence[str] = ()) -> list[str]:
        eng = self.engine() if self.generate_with == "engine" else None
        if eng is not None:
            from lmlab.lm.engine import sampling_top_k

            return eng.generate(_seq(prompts), max_new_tokens, temperature, top_p, sampling_top_k(self.model), seed,
                                stop, batch_size=self.batch_size)
        if seed is not None:
            torch.manual_seed(seed)
        seqs = [self.encode(p) for p in _seq(prompts)]
        texts: list[str] = []
        for sl in self._chunks(len(seqs)):
            ids, mask, _ = self.pad_left(seqs[sl])
            kwargs: dict[str, Any] = dict(max_new_tokens=max_new_tokens, pad_token_id=self.pad_id)
            if temperature > 0:
                kwargs.update(do_sample=True, temperature=temperature, top_p=top_p)
            else:
                kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
            out = self.model.generate(input_ids=ids, attention_mask=mask, **kwargs)
            texts += self._tokenizer.batch_decode(out[:, ids.shape[1]:], skip_special_tokens=True)
        return [cut_at_stop(t, stop) for t in texts]

    # -- recording ---------------------------------------------------------------------------------
    @contextlib.contextmanager
    def record(self, attn: bool = True, values: bool = False, resid: bool = False,
               layers: Sequence[int] | None = None) -> Iterator[Recording]:
        """Capture attention probabilities, value states and/or residual states of ``layers`` (default all)."""
        all_layers = decoder_layers(self.model)
        chosen = list(range(len(all_layers))) if layers is None else [i % len(all_layers) for i in layers]
        rec = Recording()
        handles: list[Any] = []
        old_impl = getattr(self.model.config, "_attn_implementation", None)
        try:
            if attn and old_impl != "eager":
                self.model.set_attn_implementation("eager")
            for i in chosen:
                layer = all_layers[i]
                if attn:
                    handles.append(_child(layer, _ATTN_NAMES, "attention").register_forward_hook(_attn_hook(rec, i)))
                if values:
                    attn_mod = _child(layer, _ATTN_NAMES, "attention")
                    v_proj = _child(attn_mod, _VALUE_NAMES, "value projection")
                    head_dim = getattr(attn_mod, "head_dim", None) or self.model.config.hidden_size // self.model.config.num_attention_heads
                    handles.append(v_proj.register_forward_hook(_value_hook(rec, i, head_dim)))
                if resid:
                    handles.append(layer.register_forward_hook(_resid_hook(rec, i)))
            yield rec
        finally:
            for h in handles:
                h.remove()
            if attn and old_impl is not None and old_impl != "eager":
                self.model.set_attn_implementation(old_impl)


def _attn_hook(rec: Recording, i: int) -> Any:
    def hook(module: Any, args: Any, output: Any) -> None:
        weights = output[1] if isinstance(output, tuple) and len(output) > 1 else None
        if weights is None:
            raise LMError("the attention module returned no probabilities; load the model with "
                          "attn_implementation='eager'")
        rec._add(rec.attn, i, weights)
    return hook


def _value_hook(rec: Recording, i: int, head_dim: int) -> Any:
    def hook(module: Any, args: Any, output: torch.Tensor) -> None:
        B, T, _ = output.shape
        rec._add(rec.values, i, output.view(B, T, -1, head_dim))
    return hook


def _resid_hook(rec: Recording, i: int) -> Any:
    def hook(module: Any, args: Any, output: Any) -> None:
        rec._add(rec.resid, i, output[0] if isinstance(output, tuple) else output)
    return hook


def common_prefix(seqs: Sequence[Sequence[int]]) -> list[int]:
    """The longest common token prefix, shortened so every sequence keeps at least one token after it."""
    first = list(seqs[0])
    n = min(len(s) for s in seqs) - 1
    k = 0
    while k < n and all(s[k] == first[k] for s in seqs):
        k += 1
    return first[:k]


def _seq(prompts: Sequence[str]) -> list[str]:
    if isinstance(prompts, str):
        raise TypeError("prompts must be a sequence of strings; wrap a single prompt in a list")
    return list(prompts)


