"""TinyTransformer: a small decoder-only transformer with a named hook point on every activation.

Vocabulary follows TransformerLens: ``d_model, n_heads, d_head, n_layers, n_ctx, d_vocab`` and
``W_E, W_pos, W_Q, W_K, W_V, W_O, W_in, W_out, W_U``. Shapes use ``(batch, pos, ...)``.

The switches the papers vary are config fields: attention activation (softmax or ReLU),
positional encoding (learned, rotary, none), layer norm on/off, MLP on/off (attention-only).

Hook points, for block ``i`` (``lmlab.nn.TinyTransformer(cfg).hook_names`` lists exactly those that fire for
the model's config: ``hook_pos_embed`` only with learned positions, ``hook_normalized`` only with layer norm,
the MLP hooks only with an MLP)::

    hook_embed, hook_pos_embed
    blocks.i.hook_resid_pre
    blocks.i.attn.hook_q / hook_k / hook_v      (batch, pos, head, d_head)
    blocks.i.attn.hook_attn_scores              (batch, head, query, key), masked, pre-activation
    blocks.i.attn.hook_pattern                  (batch, head, query, key)
    blocks.i.attn.hook_z                        (batch, pos, head, d_head)
    blocks.i.hook_attn_out, blocks.i.hook_resid_mid
    blocks.i.mlp.hook_pre / hook_post           (batch, pos, d_mlp)
    blocks.i.hook_mlp_out, blocks.i.hook_resid_post
    hook_resid_final                            after the final layer norm

When nothing is attached to ``hook_attn_scores`` or ``hook_pattern`` and the activation is
softmax, attention runs through PyTorch's fused ``scaled_dot_product_attention``; the explicit
path is used otherwise. ``tests/unit/test_model.py`` checks that both give the same result.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from lmlab.config import Config, ConfigError
from lmlab.nn.hooks import HookedRootModule, HookPoint


@dataclass(frozen=True)
class TinyConfig(Config):
    """Shape and switches of a :class:`TinyTransformer`. Defaults: the two-hop paper's 3-layer model at d=64."""

    d_vocab: int = 34
    n_ctx: int = 24
    n_layers: int = 3
    d_model: int = 64
    n_heads: int = 1
    d_head: int | None = None  # default d_model // n_heads
    d_mlp: int | None = None  # default 4 * d_model
    attn_only: bool = False
    act_fn: Literal["relu", "gelu"] = "relu"
    attn_act: Literal["softmax", "relu"] = "softmax"
    pos_embed: Literal["learned", "rotary", "none"] = "learned"
    layer_norm: bool = True  # pre-LN plus a final LN
    ln_eps: float = 1e-5
    bias: bool = False
    # Layer-norm bias; None follows `bias`. nn.LayerNorm has one by default, as in the extreme-token
    # paper's code, where it matters: without it the 1-layer Bigram-Backcopy sink grows much more slowly.
    ln_bias: bool | None = None
    tie_embeddings: bool = False
    # "torch": what nn.Embedding / nn.Linear do by default (embeddings N(0, 1), matrices U(+-1/sqrt(fan_in))),
    # as in the papers' reference code; "gpt2": N(0, init_std), residual writers scaled by 1/sqrt(2 n_layers).
    init: Literal["torch", "gpt2"] = "torch"
    init_std: float = 0.02
    rotary_base: float = 10000.0

    def validate(self) -> None:
        for name in ("d_vocab", "n_ctx", "n_layers", "d_model", "n_heads"):
            if getattr(self, name) < 1:
                raise ConfigError(f"TinyConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.d_head is None and self.d_model % self.n_heads:
            raise ConfigError(
                f"TinyConfig.d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads}); "
                "change one of them or set d_head explicitly"
            )
        if self.d_head is not None and self.d_head < 1:
            raise ConfigError(f"TinyConfig.d_head must be >= 1, got {self.d_head}")
        if self.d_mlp is not None and self.d_mlp < 1:
            raise ConfigError(f"TinyConfig.d_mlp must be >= 1, got {self.d_mlp} (use attn_only=true for no MLP)")
        if self.pos_embed == "rotary" and self.head_dim % 2:
            raise ConfigError(f"TinyConfig.d_head ({self.head_dim}) must be even for rotary positions")
        if self.init_std <= 0 or self.ln_eps <= 0:
            raise ConfigError("TinyConfig.init_std and ln_eps must be > 0")

    @property
    def head_dim(self) -> int:
        return self.d_head if self.d_head is not None else self.d_model // self.n_heads

    @property
    def mlp_dim(self) -> int:
        return self.d_mlp if self.d_mlp is not None else 4 * self.d_model


class LayerNorm(nn.Module):
    def __init__(self, cfg: TinyConfig):
        super().__init__()
        self.ln = nn.LayerNorm(cfg.d_model, eps=cfg.ln_eps, bias=cfg.bias if cfg.ln_bias is None else cfg.ln_bias)
        self.hook_normalized = HookPoint()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.hook_normalized(self.ln(x))


def _maybe_ln(cfg: TinyConfig) -> nn.Module:
    return LayerNorm(cfg) if cfg.layer_norm else nn.Identity()


class Rotary(nn.Module):
    """Rotary position embedding (RoFormer), applied to q and k per head."""

    def __init__(self, cfg: TinyConfig):
        super().__init__()
        d = cfg.head_dim
        inv_freq = 1.0 / (cfg.rotary_base ** (torch.arange(0, d, 2).float() / d))
        angles = torch.outer(torch.arange(cfg.n_ctx).float(), inv_freq)  # (pos, d/2)
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)

    def forward(self, x: torch.Tensor, pos: torch.Tensor | None = None) -> torch.Tensor:
        """x: (batch, pos, head, d_head); ``pos`` the positions of x's rows (default 0..T-1)."""
        T = x.shape[1]
        cos, sin = (self.cos[:T], self.sin[:T]) if pos is None else (self.cos[pos], self.sin[pos])
        cos, sin = cos[:, None, :], sin[:, None, :]
        x1, x2 = x[..., 0::2], x[..., 1::2]
        out = torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)
        return out.flatten(-2)


class Attention(nn.Module):
    def __init__(self, cfg: TinyConfig):
        super().__init__()
        self.cfg = cfg
        H, D, M = cfg.n_heads, cfg.head_dim, cfg.d_model
        self.W_Q = nn.Parameter(torch.empty(M, H * D))
        self.W_K = nn.Parameter(torch.empty(M, H * D))
        self.W_V = nn.Parameter(torch.empty(M, H * D))
        self.W_O = nn.Parameter(torch.empty(H * D, M))
        self.b_QKV = nn.Parameter(torch.zeros(3 * H * D)) if cfg.bias else None
        self.b_O = nn.Parameter(torch.zeros(M)) if cfg.bias else None
        self.rotary = Rotary(cfg) if cfg.pos_embed == "rotary" else None
        self.register_buffer("causal", torch.ones(cfg.n_ctx, cfg.n_ctx, dtype=torch.bool).tril(), persistent=False)
        # ReLU attention divides by the number of visible keys (query position + 1), as in the
        # extreme-token paper: relu(q.k/sqrt(d_head) + mask) / i.
        self.register_buffer("n_visible", torch.arange(1, cfg.n_ctx + 1).float()[:, None], persistent=False)
        for name in ("q", "k", "v", "attn_scores", "pattern", "z"):
            setattr(self, f"hook_{name}", HookPoint())

    def forward(self, x: torch.Tensor, q_pos: torch.Tensor | None = None) -> torch.Tensor:
        """Attention of every position, or only of the queries at ``q_pos`` (keys and values: all positions)."""
        B, T, _ = x.shape
        H, D = self.cfg.n_heads, self.cfg.head_dim
        # One matmul for q, k, v (the three weights stay separate parameters for analysis).
        W = torch.cat([self.W_Q, self.W_K, self.W_V], dim=1)
        if q_pos is None:
            q, k, v = F.linear(x, W.T, self.b_QKV).view(B, T, 3, H, D).unbind(dim=2)
        else:
            b_q, b_kv = (None, None) if self.b_QKV is None else (self.b_QKV[: H * D], self.b_QKV[H * D:])
            q = F.linear(x[:, q_pos], W[:, : H * D].T, b_q).view(B, len(q_pos), H, D)
            k, v = F.linear(x, W[:, H * D:].T, b_kv).view(B, T, 2, H, D).unbind(dim=2)
        if self.rotary is not None:
            q, k = self.rotary(q, q_pos), self.rotary(k)
        q, k, v = self.hook_q(q), self.hook_k(k), self.hook_v(v)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # (batch, head, pos, d_head)
        mask = self.causal[:T, :T] if q_pos is None else self.causal[q_pos, :T]
        n_visible = self.n_visible[:T] if q_pos is None else self.n_visible[q_pos]

        explicit = self.cfg.attn_act != "softmax" or self.hook_pattern.active or self.hook_attn_scores.active
        if explicit:
            scores = (q @ k.transpose(-1, -2)) / math.sqrt(D)
            if self.cfg.attn_act == "softmax":
                scores = self.hook_attn_scores(scores.masked_fill(~mask, float("-inf")))
                pattern = scores.softmax(dim=-1)
            else:
                scores = self.hook_attn_scores(scores.masked_fill(~mask, 0.0))
                pattern = F.relu(scores) / n_visible
            pattern = self.hook_pattern(pattern)
            z = pattern @ v
        elif q_pos is None:
            z = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            z = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        z = self.hook_z(z.transpose(1, 2))  # (batch, pos, head, d_head)
        return F.linear(z.reshape(B, z.shape[1], H * D), self.W_O.T, self.b_O)


class MLP(nn.Module):
    def __init__(self, cfg: TinyConfig):
        super().__init__()
        self.W_in = nn.Parameter(torch.empty(cfg.d_model, cfg.mlp_dim))
        self.W_out = nn.Parameter(torch.empty(cfg.mlp_dim, cfg.d_model))
        self.b_in = nn.Parameter(torch.zeros(cfg.mlp_dim)) if cfg.bias else None
        self.b_out = nn.Parameter(torch.zeros(cfg.d_model)) if cfg.bias else None
        self.act = F.relu if cfg.act_fn == "relu" else F.gelu
        self.hook_pre, self.hook_post = HookPoint(), HookPoint()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.hook_pre(F.linear(x, self.W_in.T, self.b_in))
        post = self.hook_post(self.act(pre))
        return F.linear(post, self.W_out.T, self.b_out)


class Block(nn.Module):
    def __init__(self, cfg: TinyConfig):
        super().__init__()
        self.ln1, self.attn = _maybe_ln(cfg), Attention(cfg)
        self.ln2 = _maybe_ln(cfg) if not cfg.attn_only else None
        self.mlp = MLP(cfg) if not cfg.attn_only else None
        for name in ("resid_pre", "attn_out", "resid_mid", "resid_post") + (("mlp_out",) if self.mlp else ()):
            setattr(self, f"hook_{name}", HookPoint())

    def forward(self, resid: torch.Tensor, q_pos: torch.Tensor | None = None) -> torch.Tensor:
        resid = self.hook_resid_pre(resid)
        attn_out = self.hook_attn_out(self.attn(self.ln1(resid), q_pos))
        if q_pos is not None:
            resid = resid[:, q_pos]
        resid = self.hook_resid_mid(resid + attn_out)
        if self.mlp is not None:
            resid = resid + self.hook_mlp_out(self.mlp(self.ln2(resid)))
        return self.hook_resid_post(resid)


class TinyTransformer(HookedRootModule):
    """Decoder-only transformer. ``forward(tokens) -> logits`` with tokens ``(batch, pos)``.

    >>> m = TinyTransformer(TinyConfig(d_vocab=10, n_ctx=6, n_layers=2, d_model=16, n_heads=2))
    >>> m(torch.zeros(3, 6, dtype=torch.long)).shape
    torch.Size([3, 6, 10])
    """

    def __init__(self, cfg: TinyConfig):
        super().__init__()
        self.cfg = cfg
        self.W_E = nn.Parameter(torch.empty(cfg.d_vocab, cfg.d_model))
        self.W_pos = nn.Parameter(torch.empty(cfg.n_ctx, cfg.d_model)) if cfg.pos_embed == "learned" else None
        self.hook_embed = HookPoint()
        if self.W_pos is not None:  # rotary positions act inside attention (on q and k); none: no position signal
            self.hook_pos_embed = HookPoint()
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.ln_final = _maybe_ln(cfg)
        self.hook_resid_final = HookPoint()
        self.W_U = None if cfg.tie_embeddings else nn.Parameter(torch.empty(cfg.d_model, cfg.d_vocab))
        self.reset_parameters()
        self.setup_hooks()

    def reset_parameters(self) -> None:
        std = self.cfg.init_std
        for name, p in self.named_parameters():
            if name.startswith("b_") or ".b_" in name or name.endswith("ln.weight") or name.endswith("ln.bias"):
                continue
            if self.cfg.init == "torch":
                if name in ("W_E", "W_pos"):
                    nn.init.normal_(p)  # nn.Embedding default
                else:  # nn.Linear default: kaiming_uniform(a=sqrt(5)) = U(-1/sqrt(fan_in), 1/sqrt(fan_in))
                    bound = 1 / math.sqrt(p.shape[0])  # our matrices are stored (fan_in, fan_out)
                    nn.init.uniform_(p, -bound, bound)
            else:
                scale = 1 / math.sqrt(2 * self.cfg.n_layers) if name.endswith(("W_O", "W_out")) else 1.0
                nn.init.normal_(p, std=std * scale)

    def forward(self, tokens: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (batch, pos, d_vocab); with ``positions`` (1-D), only at those positions: (batch, len, d_vocab).

        With ``positions`` the last block computes its queries, MLP and unembedding only where asked
        (exact, since attention is causal), which is what training with a loss at a few positions needs.
        Hooks of the last block then see ``len(positions)`` query rows.
        """
        if tokens.dim() != 2:
            raise ValueError(f"tokens must be (batch, pos), got shape {tuple(tokens.shape)}")
        T = tokens.shape[1]
        if T > self.cfg.n_ctx:
            raise ValueError(f"sequence length {T} exceeds n_ctx={self.cfg.n_ctx}")
        resid = self.hook_embed(F.embedding(tokens, self.W_E))
        if self.W_pos is not None:
            resid = resid + self.hook_pos_embed(self.W_pos[:T])
        last = len(self.blocks) - 1
        for i, block in enumerate(self.blocks):
            resid = block(resid, positions if i == last else None)
        resid = self.hook_resid_final(self.ln_final(resid))
        return resid @ (self.W_E.T if self.W_U is None else self.W_U)

    @torch.no_grad()
    def generate(self, prompts: torch.Tensor, max_len: int | None = None, eos: int | None = None, pad: int = 0,
                 temperature: float = 0.0, top_k: int | None = None,
                 generator: torch.Generator | None = None, use_cache: bool = True) -> torch.Tensor:
        """Extend every row of ``prompts`` (batch, pos) until it has produced ``eos`` or is ``max_len`` tokens
        long (default ``n_ctx``); returns (batch, <= max_len) on the prompts' device.

        Greedy (argmax) when ``temperature`` is 0; otherwise samples from softmax(logits / temperature),
        restricted to the ``top_k`` most likely tokens when given, drawing from ``generator``. Rows that are
        done are filled with ``pad``. Call ``model.eval()`` first.

        With ``use_cache`` (the default) the keys and values of past positions are kept in a preallocated
        KV cache and each step runs the new token only (:meth:`forward_cached`); hooks do not fire on that
        path, so when any hook is attached the uncached path (the whole prefix each step) is used.
        ``tests/unit/test_model.py`` checks that both give the same logits.

        >>> m = TinyTransformer(TinyConfig(d_vocab=10, n_ctx=6, n_layers=1, d_model=16, n_heads=2))
        >>> m.generate(torch.zeros(2, 2, dtype=torch.long)).shape
        torch.Size([2, 6])
        """
        if prompts.dim() != 2 or prompts.shape[1] < 1:
            raise ValueError(f"prompts must be (batch, pos) with pos >= 1, got shape {tuple(prompts.shape)}")
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0 (0: greedy), got {temperature}")
        if top_k is not None and top_k < 1:
            raise ValueError(f"top_k must be >= 1 or None, got {top_k}")
        max_len = self.cfg.n_ctx if max_len is None else max_len
        if max_len > self.cfg.n_ctx:
            raise ValueError(f"max_len {max_len} exceeds n_ctx={self.cfg.n_ctx}")
        device = next(self.parameters()).device
        x = prompts.to(device)
        use_cache = use_cache and not any(getattr(m, "active", False) for m in self.modules() if isinstance(m, HookPoint))
        cache = self.new_kv_cache(x.shape[0], max_len) if use_cache else None
        done = torch.zeros(x.shape[0], dtype=torch.bool, device=device)
        new = x
        while x.shape[1] < max_len and not done.all():
            if cache is not None:
                logits = self.forward_cached(new, cache)[:, -1]
            else:
                logits = self(x, positions=torch.tensor([x.shape[1] - 1], device=device))[:, -1]
            if temperature == 0:
                nxt = logits.argmax(-1)
            else:
                logits = logits.float() / temperature
                if top_k is not None and top_k < logits.shape[-1]:
                    kth = logits.topk(top_k, dim=-1).values[:, -1:]
                    logits = logits.masked_fill(logits < kth, float("-inf"))
                probs = logits.softmax(-1)
                nxt = torch.multinomial(probs.cpu() if generator is not None and generator.device.type == "cpu"
                                        else probs, 1, generator=generator)[:, 0].to(device)
            nxt = torch.where(done, torch.full_like(nxt, pad), nxt)
            x = torch.cat([x, nxt[:, None]], dim=1)
            new = nxt[:, None]
            if eos is not None:
                done |= nxt == eos
        return x.to(prompts.device)

    def new_kv_cache(self, batch: int, max_len: int | None = None) -> dict[str, object]:
        """An empty KV cache for :meth:`forward_cached`: per layer, keys and values (batch, head, max_len, d_head)."""
        max_len = self.cfg.n_ctx if max_len is None else max_len
        p = next(self.parameters())
        shape = (batch, self.cfg.n_heads, max_len, self.cfg.head_dim)
        return {"len": 0, "k": [torch.zeros(shape, dtype=p.dtype, device=p.device) for _ in self.blocks],
                "v": [torch.zeros(shape, dtype=p.dtype, device=p.device) for _ in self.blocks]}

    def forward_cached(self, tokens: torch.Tensor, cache: dict[str, object]) -> torch.Tensor:
        """Logits (batch, new, d_vocab) of ``tokens`` (batch, new), which follow the ``cache["len"]`` positions already
        in ``cache``; their keys and values are written into it. The same arithmetic as :meth:`forward` (written out
        per block because the hooked path recomputes every position), without hook points."""
        B, T = tokens.shape
        t0 = int(cache["len"])
        if t0 + T > cache["k"][0].shape[2]:
            raise ValueError(f"the KV cache holds {cache['k'][0].shape[2]} positions; {t0 + T} asked")
        H, D = self.cfg.n_heads, self.cfg.head_dim
        pos = torch.arange(t0, t0 + T, device=tokens.device)
        resid = F.embedding(tokens, self.W_E)
        if self.W_pos is not None:
            resid = resid + self.W_pos[t0:t0 + T]
        for i, block in enumerate(self.blocks):
            a = block.attn
            W = torch.cat([a.W_Q, a.W_K, a.W_V], dim=1)
            q, k, v = F.linear(block.ln1(resid), W.T, a.b_QKV).view(B, T, 3, H, D).unbind(dim=2)
            if a.rotary is not None:
                q, k = a.rotary(q, pos), a.rotary(k, pos)
            cache["k"][i][:, :, t0:t0 + T] = k.transpose(1, 2)
            cache["v"][i][:, :, t0:t0 + T] = v.transpose(1, 2)
            k_all, v_all = cache["k"][i][:, :, : t0 + T], cache["v"][i][:, :, : t0 + T]
            q = q.transpose(1, 2)
            mask = a.causal[t0:t0 + T, : t0 + T]
            if self.cfg.attn_act == "softmax":
                z = F.scaled_dot_product_attention(q, k_all, v_all, attn_mask=mask)
            else:
                scores = ((q @ k_all.transpose(-1, -2)) / math.sqrt(D)).masked_fill(~mask, 0.0)
                z = (F.relu(scores) / a.n_visible[t0:t0 + T]) @ v_all
            resid = resid + F.linear(z.transpose(1, 2).reshape(B, T, H * D), a.W_O.T, a.b_O)
            if block.mlp is not None:
                resid = resid + block.mlp(block.ln2(resid))
        cache["len"] = t0 + T
        return self.ln_final(resid) @ (self.W_E.T if self.W_U is None else self.W_U)

    @property
    def n_params(self) -> int:
        return sum(p.numel() for p in self.parameters())
