"""Fast decoding for Llama-family Hugging Face models on CPU: static KV cache, batched decoding with
per-row stop, continuous batching of concurrent requests, and low-precision weights for inference.

Why a decode loop of our own instead of ``model.generate``: at batch 1 on CPU, transformers'
``generate`` spends much of each step outside the matrix products (cache objects, logits-processor
lists, stopping criteria, per-module Python), and its ``StaticCache`` + ``torch.compile`` route needs a
C++ compiler at run time and minutes of compilation. The engine runs the *same* weights (it reads the
HF modules' tensors; for float32 it holds no copy, so training and hooks-free use see current weights)
through the same operations (RMSNorm, rotary embedding from the model's own ``rotary_emb``, SDPA,
SiLU MLP) in a plain loop over a preallocated cache. Tests check greedy outputs against
``model.generate`` on a fixed prompt set.

Layout: the cache holds ``slots`` rows; row ``s`` keeps its sequence at cache indices ``0..len-1``
(position == index). A batch of prompts is prefilled right-padded, so every row starts at index 0
and a finished row's slot can take a new request while the others keep decoding (what
:class:`GenerationQueue` does). Padding after a prompt is never attended to (causal mask in the
prefill, a per-row key mask in decoding). A row may also start from keys/values copied into its slot
(a shared prompt prefix, a repeated prompt): its remaining tokens are then prefilled at indices and
positions after them (``prefill(..., offsets=)``; what :class:`GenerationQueue`'s prompt reuse does).

Precisions (``precision=``):

==============  ==========================================================================================
``float32``     the HF weights as they are (no copy); greedy outputs identical to ``model.generate``
``bfloat16``    weights and activations in bfloat16 (RMSNorm statistics, softmax and logits in float32)
``int8``        weight-only int8, one scale per output channel (``torch._weight_int8pack_mm``, the kernel
                torchao's int8 weight-only path calls), activations in bfloat16
``int8-dynamic`` int8 weights per output channel and int8 activations quantized per call
                (``torch.ao`` dynamic quantization, fbgemm), activations otherwise float32
==============  ==========================================================================================

Only ``LlamaForCausalLM``-shaped models are supported (SmolLM2, Llama, Mistral without sliding
window); :func:`supports` says why not otherwise, and :class:`~lmlab.lm.hf.HFLM` then uses
``model.generate``.
"""

from __future__ import annotations

import threading
import time
import warnings
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from lmlab.lm.base import LMError, cut_at_stop

PRECISIONS = ("float32", "bfloat16", "int8", "int8-dynamic")
#: prompts whose keys/values a queue keeps for identical later prompts. One entry holds 2 x layers x kv_heads x
#: head_dim values per prompt token plus one row of logits: for SmolLM2-135M in float32 (30 layers, 3 kv heads
#: of 64) 45 KiB per token + 192 KiB, about 40 MiB for a 900-token judge prompt (half in bfloat16)
PROMPT_CACHE_ENTRIES = 4


class QueueFull(LMError):
    """The generation queue holds its maximum number of waiting requests; retry later or raise ``max_pending``."""


def supports(model: Any) -> str | None:
    """None if the engine can run ``model``; else one line saying why not."""
    cfg = getattr(model, "config", None)
    if cfg is None or getattr(cfg, "model_type", None) not in ("llama", "mistral"):
        return f"the fast engine runs Llama-family models only (this one is {getattr(cfg, 'model_type', type(model).__name__)})"
    if getattr(cfg, "attention_bias", False) or getattr(cfg, "mlp_bias", False):
        return "the fast engine has no attention/MLP biases"
    if getattr(cfg, "hidden_act", "silu") != "silu":
        return f"the fast engine has SiLU MLPs only (this one: {cfg.hidden_act})"
    if getattr(cfg, "sliding_window", None):
        return "the fast engine has no sliding-window attention"
    inner = getattr(model, "model", None)
    if inner is None or not hasattr(inner, "layers") or not hasattr(inner, "rotary_emb"):
        return "the model has no model.layers / model.rotary_emb"
    return None


# -- linear layers in each precision -----------------------------------------------------------------
class _Linear:
    """``y = x @ W.T`` for one weight, in one precision. float32 keeps a reference to the module's own
    tensor, so it always sees the current weights."""

    def __init__(self, weight: torch.Tensor, precision: str):
        self.precision = precision
        w = weight.detach()
        if precision == "float32":
            self.w = w
        elif precision == "bfloat16":
            self.w = w.to(torch.bfloat16).contiguous()
        elif precision == "int8":
            scale = w.float().abs().amax(dim=1).clamp_min(1e-12) / 127.0
            self.w = torch.round(w.float() / scale[:, None]).clamp(-127, 127).to(torch.int8).contiguous()
            self.scale = scale.to(torch.bfloat16)
        elif precision == "int8-dynamic":
            # torch.ao's dynamic quantized linear: fbgemm kernels, per-channel weight scales
            from torch.ao.nn.quantized.dynamic import Linear as DynLinear

            lin = torch.nn.Linear(w.shape[1], w.shape[0], bias=False)
            lin.weight = torch.nn.Parameter(w.float(), requires_grad=False)
            lin.qconfig = torch.ao.quantization.per_channel_dynamic_qconfig
            with warnings.catch_warnings():  # torch.ao's eager quantization is deprecated in favour of torchao
                warnings.simplefilter("ignore")
                self.mod = DynLinear.from_float(lin)
        else:
            raise LMError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.precision in ("float32", "bfloat16"):
            return F.linear(x, self.w)
        if self.precision == "int8":
            shape = x.shape
            y = torch._weight_int8pack_mm(x.reshape(-1, shape[-1]), self.w, self.scale)
            return y.view(*shape[:-1], -1)
        return self.mod(x)


@dataclass
class _Layer:
    ln1: torch.Tensor
    ln2: torch.Tensor
    q: _Linear
    k: _Linear
    v: _Linear
    o: _Linear
    gate: _Linear
    up: _Linear
    down: _Linear


def _act_dtype(precision: str) -> torch.dtype:
    return torch.bfloat16 if precision in ("bfloat16", "int8") else torch.float32


class KVCache:
    """Preallocated keys and values: (layers, slots, kv_heads, max_len, head_dim) each, plus a key mask."""

    def __init__(self, n_layers: int, slots: int, kv_heads: int, max_len: int, head_dim: int, dtype: torch.dtype,
                 device: torch.device):
        shape = (n_layers, slots, kv_heads, max_len, head_dim)
        self.k = torch.zeros(shape, dtype=dtype, device=device)
        self.v = torch.zeros(shape, dtype=dtype, device=device)
        self.mask = torch.zeros((slots, max_len), dtype=torch.bool, device=device)
        self.mask[:, 0] = True  # an idle row attends to something (an all-False row would give NaN)
        self.lens = torch.zeros(slots, dtype=torch.long)
        self.slots, self.max_len = slots, max_len

    def nbytes(self) -> int:
        return 2 * self.k.numel() * self.k.element_size()


class DecodeEngine:
    """Batched prefill and decoding of a Llama-family HF model (see the module docstring)."""

    def __init__(self, model: Any, tokenizer: Any, precision: str = "float32",
                 encode: Callable[[str], list[int]] | None = None):
        why = supports(model)
        if why is not None:
            raise LMError(why)
        if precision not in PRECISIONS:
            raise LMError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
        self.model, self.tokenizer, self.precision = model, tokenizer, precision
        self._encode = encode or (lambda t: list(tokenizer(t)["input_ids"]))
        cfg = model.config
        self.n_layers = cfg.num_hidden_layers
        self.n_heads = cfg.num_attention_heads
        self.kv_heads = getattr(cfg, "num_key_value_heads", None) or self.n_heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // self.n_heads
        self.eps = cfg.rms_norm_eps
        self.dtype = _act_dtype(precision)
        self.device = next(model.parameters()).device
        gc = getattr(model, "generation_config", None)
        eos = getattr(gc, "eos_token_id", None) if gc is not None else None
        if eos is None:
            eos = cfg.eos_token_id
        self.eos_ids = [int(e) for e in (eos if isinstance(eos, (list, tuple)) else [eos]) if e is not None]
        pad = getattr(tokenizer, "pad_token_id", None)
        self.pad_id = int(pad) if pad is not None else (self.eos_ids[0] if self.eos_ids else 0)
        self._layers: list[_Layer] | None = None
        self._key: Any = None
        self._cos = self._sin = None
        self.lock = threading.RLock()  # one forward at a time (the queue worker and direct calls share weights)

    # -- weights -----------------------------------------------------------------------------------------
    def _weights_key(self) -> Any:
        # in-place updates (an optimizer step) bump a tensor's _version; a new tensor changes its data_ptr
        return tuple((p.data_ptr(), p._version) for p in self.model.parameters())

    def _prepare(self) -> list[_Layer]:
        key = self._weights_key()  # float32 rebuilds only its wrappers (no copies); others re-convert
        if self._layers is not None and key == self._key:
            return self._layers
        p = self.precision
        inner = self.model.model
        layers = []
        for layer in inner.layers:
            a, m = layer.self_attn, layer.mlp
            layers.append(_Layer(layer.input_layernorm.weight.detach(), layer.post_attention_layernorm.weight.detach(),
                                 _Linear(a.q_proj.weight, p), _Linear(a.k_proj.weight, p), _Linear(a.v_proj.weight, p),
                                 _Linear(a.o_proj.weight, p), _Linear(m.gate_proj.weight, p),
                                 _Linear(m.up_proj.weight, p), _Linear(m.down_proj.weight, p)))
        self._embed = inner.embed_tokens.weight.detach()
        self._norm = inner.norm.weight.detach()
        self._head = _Linear(self.model.lm_head.weight, p)
        self._layers, self._key = layers, key
        return layers

    def _rope(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """cos/sin tables (n, head_dim) from the model's own rotary module (same values as its forward)."""
        if self._cos is None or self._cos.shape[0] < n:
            n = max(n, 256)
            pos = torch.arange(n, device=self.device)[None]
            probe = torch.zeros(1, dtype=torch.float32, device=self.device)
            cos, sin = self.model.model.rotary_emb(probe, pos)
            self._cos, self._sin = cos[0], sin[0]
        return self._cos, self._sin

    # -- the forward pass ----------------------------------------------------------------------------------
    def _rms(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        # LlamaRMSNorm: statistics in float32, the weight applied after casting back
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return w.to(x.dtype) * xf.to(x.dtype) if w.dtype == x.dtype else (w * xf.to(w.dtype)).to(x.dtype)

    @staticmethod
    def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        h = x.shape[-1] // 2
        return x * cos + torch.cat((-x[..., h:], x[..., :h]), dim=-1) * sin

    def _qkv(self, L: _Layer, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One layer's queries, keys and values (B, heads, T, head_dim), RoPE applied to q and k."""
        B, T = x.shape[:2]
        h = self._rms(x, L.ln1)
        q = L.q(h).view(B, T, self.n_heads, self.head_dim).transpose(1, 2)
        k = L.k(h).view(B, T, self.kv_heads, self.head_dim).transpose(1, 2)
        v = L.v(h).view(B, T, self.kv_heads, self.head_dim).transpose(1, 2)
        return self._rotate(q, cos, sin), self._rotate(k, cos, sin), v

    def _forward(self, cache: KVCache, ids: torch.Tensor, slots: torch.Tensor, prefill_lens: torch.Tensor | None,
                 rows: int | None = None, offsets: torch.Tensor | None = None) -> torch.Tensor:
        """Last-position logits (B, vocab), float32.

        Prefill (``prefill_lens`` given): ``ids`` (B, T) right-padded prompts written to cache indices
        0..T-1 of ``slots``; returns the logits at each row's last real token. With ``offsets`` (B,), row b's
        tokens continue a sequence whose first ``offsets[b]`` keys/values are already in its slot: they go
        to indices (and RoPE positions) offsets[b].. and attend to those keys plus their own causal part.
        Decode: ``ids`` (rows,) one token per cache row 0..rows-1, at index ``cache.lens[row]``.
        """
        if prefill_lens is not None and offsets is not None:
            return self._forward_at(cache, ids, slots, prefill_lens, offsets)
        layers = self._prepare()
        H, Hkv, Dh = self.n_heads, self.kv_heads, self.head_dim
        if prefill_lens is not None:
            B, T = ids.shape
            cos, sin = self._rope(T)
            cos, sin = cos[:T].to(self.dtype)[None, None], sin[:T].to(self.dtype)[None, None]
        else:
            B, T = ids.shape[0], 1
            ids = ids[:, None]
            pos = cache.lens[:B].to(self.device)
            cos, sin = self._rope(int(pos.max()) + 1)
            cos, sin = cos[pos].to(self.dtype)[:, None, None], sin[pos].to(self.dtype)[:, None, None]
            S = int(pos.max()) + 1
            keymask = cache.mask[:B, :S].clone()
            keymask[torch.arange(B), pos] = True
            attn_mask = keymask[:, None, None, :]
            bidx = torch.arange(B, device=self.device)
        x = self._embed[ids].to(self.dtype)
        for li, L in enumerate(layers):
            q, k, v = self._qkv(L, x, cos, sin)
            kc, vc = cache.k[li], cache.v[li]
            if prefill_lens is not None:
                kc[slots, :, :T] = k.to(kc.dtype)
                vc[slots, :, :T] = v.to(vc.dtype)
                a = F.scaled_dot_product_attention(q, k, v, is_causal=T > 1, enable_gqa=Hkv != H)
            else:
                kc[bidx, :, pos] = k[:, :, 0].to(kc.dtype)
                vc[bidx, :, pos] = v[:, :, 0].to(vc.dtype)
                a = F.scaled_dot_product_attention(q, kc[:B, :, :S].to(q.dtype), vc[:B, :, :S].to(q.dtype),
                                                   attn_mask=attn_mask, enable_gqa=Hkv != H)
            x = x + L.o(a.transpose(1, 2).reshape(B, T, H * Dh))
            h = self._rms(x, L.ln2)
            x = x + L.down(F.silu(L.gate(h)) * L.up(h))
        if prefill_lens is not None:
            x = x[torch.arange(B), prefill_lens.to(self.device) - 1]
            cache.mask[slots, :T] = torch.arange(T, device=self.device)[None] < prefill_lens.to(self.device)[:, None]
            cache.mask[slots, 0] = True
            cache.lens[slots.cpu()] = prefill_lens.cpu()
        else:
            x = x[:, 0]
            cache.mask[bidx, pos] = True
            cache.lens[:B] += 1
        x = self._rms(x, self._norm)
        return self._head(x).float()

    def _forward_at(self, cache: KVCache, ids: torch.Tensor, slots: torch.Tensor, lens: torch.Tensor,
                    offsets: torch.Tensor) -> torch.Tensor:
        """The prefill of :meth:`_forward` for rows that start at ``offsets`` (a kept prefix before them).

        A separate path so the plain prefill keeps its ``is_causal`` SDPA over the new keys only: here the
        queries attend to the slot's cached keys 0..offset+t through an explicit mask, and only real (not
        padding) tokens are written, so a short row's padding never lands past its slot's end.
        """
        layers = self._prepare()
        H, Hkv, Dh = self.n_heads, self.kv_heads, self.head_dim
        B, T = ids.shape
        dev = self.device
        off, lens = offsets.to(dev), lens.to(dev)
        pos = off[:, None] + torch.arange(T, device=dev)[None]  # (B, T) cache index == RoPE position
        cos, sin = self._rope(int(pos.max()) + 1)
        cos, sin = cos[pos].to(self.dtype)[:, None], sin[pos].to(self.dtype)[:, None]  # (B, 1, T, Dh)
        S = int((off + lens).max())
        attn_mask = (torch.arange(S, device=dev)[None, None] <= pos[:, :, None])[:, None]  # (B, 1, T, S)
        bi, ti = (torch.arange(T, device=dev)[None] < lens[:, None]).nonzero(as_tuple=True)
        wslot, wpos = slots[bi], pos[bi, ti]
        x = self._embed[ids].to(self.dtype)
        for li, L in enumerate(layers):
            q, k, v = self._qkv(L, x, cos, sin)
            kc, vc = cache.k[li], cache.v[li]
            kc[wslot, :, wpos] = k.transpose(1, 2)[bi, ti].to(kc.dtype)
            vc[wslot, :, wpos] = v.transpose(1, 2)[bi, ti].to(vc.dtype)
            a = F.scaled_dot_product_attention(q, kc[slots, :, :S].to(q.dtype), vc[slots, :, :S].to(q.dtype),
                                               attn_mask=attn_mask, enable_gqa=Hkv != H)
            x = x + L.o(a.transpose(1, 2).reshape(B, T, H * Dh))
            h = self._rms(x, L.ln2)
            x = x + L.down(F.silu(L.gate(h)) * L.up(h))
        x = x[torch.arange(B, device=dev), lens - 1]
        cache.mask[slots, :S] = torch.arange(S, device=dev)[None] < (off + lens)[:, None]
        cache.mask[slots, 0] = True
        cache.lens[slots.cpu()] = (off + lens).cpu()
        x = self._rms(x, self._norm)
        return self._head(x).float()

    def new_cache(self, slots: int, max_len: int) -> KVCache:
        return KVCache(self.n_layers, slots, self.kv_heads, max_len, self.head_dim, self.dtype, self.device)

    @torch.no_grad()
    def prefill(self, cache: KVCache, seqs: Sequence[Sequence[int]], slots: Sequence[int],
                offsets: Sequence[int] | None = None) -> torch.Tensor:
        """Write ``seqs`` into ``slots`` of ``cache`` (one right-padded forward pass); next-token logits (B, vocab).

        ``offsets``: per row, how many keys/values of the sequence its slot already holds (copied there with
        :meth:`copy_kv`); ``seqs[i]`` is then the rest, written from index ``offsets[i]`` on."""
        if any(len(s) == 0 for s in seqs):
            raise ValueError("empty prompt: every sequence needs at least one token")
        T = max(len(s) for s in seqs)
        end = max(len(s) + (offsets[i] if offsets else 0) for i, s in enumerate(seqs))
        if end > cache.max_len:
            raise LMError(f"a prompt of {end} tokens does not fit the cache ({cache.max_len}); raise max_len")
        ids = torch.full((len(seqs), T), self.pad_id, dtype=torch.long)
        for i, s in enumerate(seqs):
            ids[i, :len(s)] = torch.tensor(list(s), dtype=torch.long)
        lens = torch.tensor([len(s) for s in seqs], dtype=torch.long)
        off = torch.tensor(list(offsets), dtype=torch.long) if offsets is not None and any(offsets) else None
        with self.lock:
            cache.mask[torch.tensor(list(slots))] = False
            return self._forward(cache, ids.to(self.device), torch.tensor(list(slots), device=self.device), lens,
                                 offsets=off)

    def copy_kv(self, cache: KVCache, slot: int, k: torch.Tensor, v: torch.Tensor) -> None:
        """Put keys/values (layers, kv_heads, n, head_dim) of a sequence's first n tokens into ``slot``."""
        n = k.shape[2]
        with self.lock:
            cache.k[:, slot, :, :n] = k
            cache.v[:, slot, :, :n] = v
            cache.mask[slot] = False
            cache.mask[slot, :n] = True
            cache.mask[slot, 0] = True
            cache.lens[slot] = n

    @torch.no_grad()
    def decode(self, cache: KVCache, tokens: torch.Tensor) -> torch.Tensor:
        """One decoding step for cache rows 0..len(tokens)-1; next-token logits (rows, vocab)."""
        if int(cache.lens[:len(tokens)].max()) >= cache.max_len:
            raise LMError(f"the cache is full ({cache.max_len} tokens); raise max_len")
        with self.lock:
            return self._forward(cache, tokens.to(self.device), torch.arange(len(tokens), device=self.device), None)

    @torch.no_grad()
    def logits(self, seqs: Sequence[Sequence[int]]) -> torch.Tensor:
        """Next-token logits after each token sequence (one right-padded forward pass)."""
        cache = self.new_cache(len(seqs), max(len(s) for s in seqs))
        return self.prefill(cache, seqs, range(len(seqs)))

    # -- generation --------------------------------------------------------------------------------------
    @torch.no_grad()
    def generate_ids(self, seqs: Sequence[Sequence[int]], max_new_tokens: int = 32, temperature: float = 0.0,
                     top_p: float = 1.0, top_k: int | None = None, stop: Sequence[str] = (),
                     generator: torch.Generator | None = None) -> list[list[int]]:
        """New token ids per sequence (EOS excluded), one static batch: every row decodes until it hits an
        EOS id, one of the ``stop`` strings, or ``max_new_tokens``; the batch ends when all rows have.

        Sampling follows transformers' order (temperature, top-k, top-p, then one ``torch.multinomial``
        over the whole batch per step), so with the same seed it draws what ``model.generate`` draws.
        """
        B = len(seqs)
        cache = self.new_cache(B, max(len(s) for s in seqs) + max_new_tokens + 1)
        logits = self.prefill(cache, seqs, range(B))
        out: list[list[int]] = [[] for _ in range(B)]
        done = torch.zeros(B, dtype=torch.bool)
        for step in range(max_new_tokens):
            nxt = _choose(logits, temperature, top_p, top_k, generator)
            nxt = torch.where(done, torch.full_like(nxt, self.pad_id), nxt)
            for i in range(B):
                if not done[i]:
                    t = int(nxt[i])
                    if t in self.eos_ids:
                        done[i] = True
                    else:
                        out[i].append(t)
                        if stop and _hit_stop(self.tokenizer, out[i], stop):
                            done[i] = True
            if bool(done.all()) or step == max_new_tokens - 1:
                break
            logits = self.decode(cache, nxt)
        return out

    def generate(self, prompts: Sequence[str], max_new_tokens: int = 32, temperature: float = 0.0,
                 top_p: float = 1.0, top_k: int | None = None, seed: int | None = None, stop: Sequence[str] = (),
                 batch_size: int = 8) -> list[str]:
        """Continuations of ``prompts`` in static batches of ``batch_size`` (text in, text out)."""
        if isinstance(prompts, str):
            raise TypeError("prompts must be a sequence of strings; wrap a single prompt in a list")
        if seed is not None:
            torch.manual_seed(seed)
        seqs = [self._encode(p) for p in prompts]
        texts: list[str] = []
        for i in range(0, len(seqs), batch_size):
            ids = self.generate_ids(seqs[i:i + batch_size], max_new_tokens, temperature, top_p, top_k, stop)
            texts += [cut_at_stop(self.tokenizer.decode(t, skip_special_tokens=True), stop) for t in ids]
        return texts

    def queue(self, max_batch: int = 8, max_pending: int = 64, max_len: int = 1024,
              shared_prefix: Sequence[int] | None = None, reuse: bool = True,
              prompt_cache: int = PROMPT_CACHE_ENTRIES) -> GenerationQueue:
        """A :class:`GenerationQueue` over this engine (start it with ``with`` or ``.start()``)."""
        return GenerationQueue(self, max_batch=max_batch, max_pending=max_pending, max_len=max_len,
                               shared_prefix=shared_prefix, reuse=reuse, prompt_cache=prompt_cache)


def _choose(logits: torch.Tensor, temperature: float, top_p: float, top_k: int | None,
            generator: torch.Generator | None = None) -> torch.Tensor:
    if temperature <= 0:
        return logits.argmax(-1)
    scores = logits / temperature if temperature != 1.0 else logits
    if top_k:
        k = min(top_k, scores.shape[-1])
        kth = torch.topk(scores, k)[0][..., -1, None]
        scores = scores.masked_fill(scores < kth, -float("inf"))
    if top_p < 1.0:
        # transformers' TopPLogitsWarper: drop the lowest tokens whose cumulative probability <= 1 - top_p
        sorted_logits, sorted_idx = torch.sort(scores, descending=False)
        cum = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        remove = cum <= (1 - top_p)
        remove[..., -1:] = False
        scores = scores.masked_fill(remove.scatter(1, sorted_idx, remove), -float("inf"))
    probs = F.softmax(scores, dim=-1)
    return torch.multinomial(probs, num_samples=1, generator=generator).squeeze(1)


def _hit_stop(tokenizer: Any, ids: list[int], stop: Sequence[str]) -> bool:
    # only the tail can contain a new match: decode the last few tokens
    tail = tokenizer.decode(ids[-8:], skip_special_tokens=True)
    return any(s and s in tail for s in stop)


# -- continuous batching -----------------------------------------------------------------------------------
@dataclass
class _Request:
    ids: list[int]
    max_new_tokens: int
    temperature: float
    top_p: float
    top_k: int | None
    stop: tuple[str, ...]
    generator: torch.Generator | None
    future: Future = field(default_factory=Future)
    out: list[int] = field(default_factory=list)
    submitted: float = field(default_factory=time.perf_counter)
    first_token_s: float | None = None
    on_token: Callable[[int], None] | None = None


class GenerationQueue:
    """Continuous batching: any thread submits prompts; one worker thread decodes them together.

    The worker keeps up to ``max_batch`` requests in the cache's slots. Each step it prefills newly
    admitted requests (one right-padded forward over the new ones) and advances every active request
    by one token; a request that ends (EOS, a stop string, ``max_new_tokens``) resolves its future and
    frees its slot for the next waiting one. At most ``max_pending`` requests wait; beyond that
    :meth:`submit` raises :class:`QueueFull` at once (callers shed load instead of piling up).

    Prompt reuse (``reuse=True``, the default): many callers send long prompts that share a head (a judge
    rubric) or repeat verbatim (N judgments of one response). ``shared_prefix`` (token ids) is prefilled
    once; an admitted prompt that starts with it gets those keys/values copied into its slot and only its
    rest is prefilled. A prompt equal to one prefilled in the same step, or to one of the last
    ``prompt_cache`` prefilled prompts, copies that prompt's keys/values and last-position logits and is
    not prefilled at all. Sampling is unchanged (each request draws with its own generator), so the
    results equal those with ``reuse=False`` up to float rounding. ``stats`` counts prefill tokens computed
    (``prefill_tokens``) and reused (``prefill_tokens_reused``).

        with engine.queue(max_batch=8) as q:
            futures = [q.submit(p, max_new_tokens=32) for p in prompts]   # from any threads
            texts = [f.result() for f in futures]
    """

    def __init__(self, engine: DecodeEngine, max_batch: int = 8, max_pending: int = 64, max_len: int = 1024,
                 shared_prefix: Sequence[int] | None = None, reuse: bool = True,
                 prompt_cache: int = PROMPT_CACHE_ENTRIES):
        if max_batch < 1 or max_pending < 0:
            raise LMError(f"GenerationQueue: max_batch ({max_batch}) must be >= 1 and max_pending ({max_pending}) >= 0")
        self.engine, self.max_batch, self.max_pending, self.max_len = engine, max_batch, max_pending, max_len
        self.reuse, self.prompt_cache = reuse, max(0, int(prompt_cache))
        self.shared_prefix = [int(t) for t in shared_prefix] if shared_prefix and reuse else []
        if len(self.shared_prefix) >= max_len:
            raise LMError(f"shared_prefix ({len(self.shared_prefix)} tokens) does not fit max_len ({max_len})")
        self._prefix_kv: tuple[torch.Tensor, torch.Tensor] | None = None
        self._prompts: OrderedDict[tuple[int, ...], tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = OrderedDict()
        self._kv_key: Any = None
        self._pending: deque[_Request] = deque()
        self._cv = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None
        self.stats = {"steps": 0, "tokens": 0, "completed": 0, "rejected": 0, "max_active": 0,
                      "prefill_tokens": 0, "prefill_tokens_reused": 0, "prefix_hits": 0, "prompt_hits": 0}

    # -- client side ---------------------------------------------------------------------------------------
    def submit(self, prompt: str | Sequence[int], max_new_tokens: int = 32, temperature: float = 0.0,
               top_p: float = 1.0, top_k: int | None = None, stop: Sequence[str] = (),
               seed: int | None = None, on_token: Callable[[int], None] | None = None) -> Future:
        """Queue one prompt (text or token ids); a Future of the continuation text. Raises QueueFull.
        ``on_token(id)`` is called from the worker thread with each generated token id (EOS excluded), for
        streaming; it must return quickly."""
        ids = self.engine._encode(prompt) if isinstance(prompt, str) else [int(t) for t in prompt]
        if not ids:
            raise ValueError("empty prompt: it needs at least one token")
        if len(ids) + max_new_tokens + 1 > self.max_len:
            raise LMError(f"prompt ({len(ids)} tokens) + max_new_tokens ({max_new_tokens}) exceed the queue's "
                          f"max_len ({self.max_len}); shorten the prompt or raise max_len")
        gen = torch.Generator().manual_seed(seed) if (seed is not None and temperature > 0) else None
        req = _Request(ids, max_new_tokens, temperature, top_p, top_k, tuple(stop), gen, on_token=on_token)
        with self._cv:
            if self._closed:
                raise LMError("the generation queue is closed")
            if len(self._pending) >= self.max_pending:
                self.stats["rejected"] += 1
                raise QueueFull(f"the generation queue is full ({self.max_pending} waiting); retry later or raise max_pending")
            self._pending.append(req)
            self._cv.notify()
        if self._thread is None:
            self.start()
        return req.future

    def generate(self, prompts: Sequence[str], **kwargs: Any) -> list[str]:
        """Submit all and wait (waits for room instead of raising QueueFull)."""
        futs = []
        for p in prompts:
            while True:
                try:
                    futs.append(self.submit(p, **kwargs))
                    break
                except QueueFull:
                    time.sleep(0.01)
        return [f.result() for f in futs]

    def start(self) -> GenerationQueue:
        with self._cv:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="lmlab-generation-queue", daemon=True)
                self._thread.start()
        return self

    def close(self, wait: bool = True) -> None:
        """Stop accepting requests; the worker finishes what it holds, then exits."""
        with self._cv:
            self._closed = True
            self._cv.notify()
        if wait and self._thread is not None:
            self._thread.join()

    def __enter__(self) -> GenerationQueue:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- worker --------------------------------------------------------------------------------------------
    def _run(self) -> None:
        eng = self.engine
        cache = eng.new_cache(self.max_batch, self.max_len)
        active: list[_Request | None] = [None] * self.max_batch
        next_tok = torch.full((self.max_batch,), eng.pad_id, dtype=torch.long)
        try:
            while True:
                with self._cv:
                    while not self._pending and not any(active) and not self._closed:
                        self._cv.wait()
                    if self._closed and not self._pending and not any(active):
                        return
                    new: list[tuple[int, _Request]] = []
                    for s in range(self.max_batch):
                        if active[s] is None and self._pending:
                            new.append((s, self._pending.popleft()))
                for s, r in new:
                    if r.future.set_running_or_notify_cancel():
                        active[s] = r
                new = [(s, r) for s, r in new if active[s] is r]
                if new:
                    try:
                        logits = self._admit(cache, new)
                    except Exception as e:  # noqa: BLE001 - the error belongs to these requests
                        for s, r in new:
                            r.future.set_exception(e)
                            active[s] = None
                        continue
                    for row, (s, r) in enumerate(new):
                        self._take(r, s, logits[row], active, next_tok)
                self.stats["max_active"] = max(self.stats["max_active"], sum(a is not None for a in active))
                live = [s for s in range(self.max_batch) if active[s] is not None]
                if not live:
                    continue
                rows = max(live) + 1
                for s in range(rows):  # idle rows below the last live one decode a pad token at index 0
                    if active[s] is None:
                        cache.lens[s] = 0
                logits = eng.decode(cache, next_tok[:rows])
                self.stats["steps"] += 1
                for s in live:
                    self._take(active[s], s, logits[s], active, next_tok)  # type: ignore[arg-type]
        except BaseException as e:  # noqa: BLE001 - never leave a caller waiting forever
            with self._cv:
                self._closed = True
                pending = list(self._pending)
                self._pending.clear()
            for r in [a for a in active if a is not None] + pending:
                if not r.future.done():
                    r.future.set_exception(e)
            raise

    # -- prompt reuse ----------------------------------------------------------------------------------------
    def _admit(self, cache: KVCache, new: list[tuple[int, _Request]]) -> list[torch.Tensor]:
        """Put the new requests' prompts into their slots; their next-token logits, in order.

        Without reuse: one right-padded prefill over all of them. With reuse: a prompt seen in this step
        or kept in the prompt cache is copied; the others are prefilled, those that start with the
        shared prefix from its end (one forward for each kind)."""
        eng = self.engine
        if not self.reuse:
            self.stats["prefill_tokens"] += sum(len(r.ids) for _, r in new)
            return list(eng.prefill(cache, [r.ids for _, r in new], [s for s, _ in new]))
        self._forget_if_weights_changed()
        out: list[torch.Tensor | None] = [None] * len(new)
        first: dict[tuple[int, ...], int] = {}
        copies, plain, prefixed = [], [], []
        P = len(self.shared_prefix)
        for i, (s, r) in enumerate(new):
            key = tuple(r.ids)
            kept = self._prompts.get(key)
            if kept is not None:
                self._prompts.move_to_end(key)
                eng.copy_kv(cache, s, kept[0], kept[1])
                out[i] = kept[2]
                self._count_reused(len(r.ids), "prompt_hits")
            elif key in first:
                copies.append((i, first[key]))
            else:
                first[key] = i
                starts = P and len(r.ids) > P and r.ids[:P] == self.shared_prefix
                (prefixed if starts else plain).append(i)
        if plain:
            logits = eng.prefill(cache, [new[i][1].ids for i in plain], [new[i][0] for i in plain])
            self.stats["prefill_tokens"] += sum(len(new[i][1].ids) for i in plain)
            for row, i in enumerate(plain):
                out[i] = logits[row]
        if prefixed:
            pk, pv = self._prefix(cache)
            for i in prefixed:
                eng.copy_kv(cache, new[i][0], pk, pv)
            logits = eng.prefill(cache, [new[i][1].ids[P:] for i in prefixed], [new[i][0] for i in prefixed],
                                 offsets=[P] * len(prefixed))
            for row, i in enumerate(prefixed):
                out[i] = logits[row]
                self.stats["prefill_tokens"] += len(new[i][1].ids) - P
                self._count_reused(P, "prefix_hits")
        for i in plain + prefixed:
            self._keep(cache, new[i][0], new[i][1].ids, out[i])  # type: ignore[arg-type]
        for i, j in copies:  # same prompt as request j of this step: copy from j's slot
            s, n = new[j][0], len(new[j][1].ids)
            eng.copy_kv(cache, new[i][0], cache.k[:, s, :, :n], cache.v[:, s, :, :n])
            out[i] = out[j]
            self._count_reused(n, "prompt_hits")
        return out  # type: ignore[return-value]

    def _count_reused(self, n: int, hit: str) -> None:
        self.stats["prefill_tokens_reused"] += n
        self.stats[hit] += 1

    def _prefix(self, cache: KVCache) -> tuple[torch.Tensor, torch.Tensor]:
        """The shared prefix's keys/values (layers, kv_heads, P, head_dim), prefilled on first use."""
        if self._prefix_kv is None:
            eng, P = self.engine, len(self.shared_prefix)
            scratch = eng.new_cache(1, P)
            eng.prefill(scratch, [self.shared_prefix], [0])
            self._prefix_kv = (scratch.k[:, 0], scratch.v[:, 0])
            self.stats["prefill_tokens"] += P
        return self._prefix_kv

    def _keep(self, cache: KVCache, s: int, ids: list[int], logits: torch.Tensor) -> None:
        """Copy slot ``s``'s prompt keys/values into the prompt cache (least recently used out)."""
        if self.prompt_cache <= 0:
            return
        n = len(ids)
        self._prompts[tuple(ids)] = (cache.k[:, s, :, :n].clone(), cache.v[:, s, :, :n].clone(), logits.clone())
        while len(self._prompts) > self.prompt_cache:
            self._prompts.popitem(last=False)

    def _forget_if_weights_changed(self) -> None:
        """Kept keys/values belong to the weights they were computed with (a queue may outlive a DPO step)."""
        key = self.engine._weights_key()
        if key != self._kv_key:
            self._prefix_kv, self._kv_key = None, key
            self._prompts.clear()

    def _take(self, r: _Request, s: int, logits: torch.Tensor, active: list[_Request | None],
              next_tok: torch.Tensor) -> None:
        """Choose request ``r``'s next token from ``logits``; finish it or queue the token for the next step."""
        eng = self.engine
        t = int(_choose(logits[None], r.temperature, r.top_p, r.top_k, r.generator)[0])
        if r.first_token_s is None:
            r.first_token_s = time.perf_counter() - r.submitted
        self.stats["tokens"] += 1
        finished = t in eng.eos_ids
        if not finished:
            r.out.append(t)
            if r.on_token is not None:
                try:
                    r.on_token(t)
                except Exception:  # noqa: BLE001 - a failing listener must not stop the worker (nor the others)
                    r.on_token = None
            finished = len(r.out) >= r.max_new_tokens or bool(r.stop and _hit_stop(eng.tokenizer, r.out, r.stop))
        if finished:
            text = cut_at_stop(eng.tokenizer.decode(r.out, skip_special_tokens=True), r.stop)
            active[s] = None
            next_tok[s] = eng.pad_id
            self.stats["completed"] += 1
            r.future.set_result(text)
        else:
            next_tok[s] = t


# -- the HFLM hook-up ----------------------------------------------------------------------------------------
# transformers fills an unset top_k with this default when sampling (GenerationConfig's global defaults)
HF_DEFAULT_TOP_K = 50
# generation-config fields whose non-default values add logits processors the engine does not have
_UNSUPPORTED_GEN = {"repetition_penalty": 1.0, "no_repeat_ngram_size": 0, "encoder_no_repeat_ngram_size": 0,
                    "bad_words_ids": None, "min_length": 0, "min_new_tokens": None, "min_p": None,
                    "typical_p": 1.0, "epsilon_cutoff": 0.0, "eta_cutoff": 0.0, "top_h": None,
                    "suppress_tokens": None, "begin_suppress_tokens": None, "forced_bos_token_id": None,
                    "forced_eos_token_id": None, "sequence_bias": None, "guidance_scale": None,
                    "num_beams": 1, "renormalize_logits": False}


def why_not(model: Any) -> str | None:
    """None if ``HFLM.generate`` can go through the engine; else why it uses ``model.generate`` instead."""
    why = supports(model)
    if why is not None:
        return why
    gc = getattr(model, "generation_config", None)
    for name, default in _UNSUPPORTED_GEN.items():
        v = getattr(gc, name, None) if gc is not None else None
        if v is not None and v != default and not (default is None and v in (0, 0.0, 1.0, [], False)):
            return f"generation_config.{name}={v!r} needs transformers' generate"
    for m in model.modules():  # hooks must see every forward pass: the engine would bypass them
        if m._forward_hooks or m._forward_pre_hooks:
            return "forward hooks are registered on the model"
    return None


def sampling_top_k(model: Any) -> int:
    gc = getattr(model, "generation_config", None)
    k = getattr(gc, "top_k", None) if gc is not None else None
    return HF_DEFAULT_TOP_K if k is None else int(k)


def engine_for(lm: Any, precision: str = "float32") -> DecodeEngine | None:
    """The (cached) engine of an :class:`~lmlab.lm.hf.HFLM`, or None when :func:`why_not` says no."""
    if why_not(lm.model) is not None:
        return None
    engines = lm.__dict__.setdefault("_engines", {})
    eng = engines.get(precision)
    if eng is None or eng.model is not lm.model:
        eng = engines[precision] = DecodeEngine(lm.model, lm.tokenizer, precision, encode=lm.encode)
    return eng
