"""Extreme-token metrics over any recorded activations: attention sinks, value drains, residual peaks.

The functions take plain tensors, so they work on a TinyTransformer cache
(``blocks.{i}.attn.hook_pattern``, ``hook_v``, ``hook_resid_post``) and on activations recorded
from a pretrained model alike. ``sink`` is the position of the candidate extreme token (BOS: 0).

>>> p = torch.zeros(1, 1, 3, 3); p[..., 0] = 1.0       # every query attends to position 0
>>> float(sink_share(p))
1.0
>>> v = torch.ones(1, 3, 1, 2); v[:, 0] = 0.1           # position 0 has a tiny value
>>> round(float(norm_ratio(v)), 3)
0.1
"""

from __future__ import annotations

import torch


def sink_share(pattern: torch.Tensor, query_mask: torch.Tensor | None = None, sink: int = 0,
               skip_sink_query: bool = True) -> torch.Tensor:
    """Mean attention on the ``sink`` key, per head: (head,).

    ``pattern`` is (batch, head, query, key); ``query_mask`` (batch, query) selects the queries
    that count (for instance the non-trigger positions). The sink's own row is left out by default
    (it can only attend to itself).
    """
    B, H, Q, _ = pattern.shape
    mask = torch.ones(B, Q, dtype=torch.bool, device=pattern.device) if query_mask is None else query_mask.bool()
    if skip_sink_query and sink < Q:
        mask = mask.clone()
        mask[:, sink] = False
    to_sink = pattern[..., sink]  # (B, H, Q)
    weights = mask[:, None, :].float()
    return (to_sink * weights).sum(dim=(0, 2)) / weights.sum(dim=(0, 2)).clamp_min(1)


def token_norms(x: torch.Tensor) -> torch.Tensor:
    """L2 norm per (batch, position) of activations shaped (batch, pos, ...) : (batch, pos)."""
    return x.flatten(2).norm(dim=-1)


def norm_ratio(x: torch.Tensor, sink: int = 0) -> torch.Tensor:
    """||x[:, sink]|| / median over the other positions of ||x[:, p]||, averaged over the batch.

    < 1 for a value-state drain, > 1 for a residual-state peak.
    """
    norms = token_norms(x)
    others = torch.cat([norms[:, :sink], norms[:, sink + 1:]], dim=1)
    return (norms[:, sink] / others.median(dim=1).values.clamp_min(1e-12)).mean()


def head_outputs(v: torch.Tensor, W_O: torch.Tensor) -> torch.Tensor:
    """What each head writes for each position if attended to: v (batch, pos, head, d_head) @ W_O per head.

    ``W_O`` is (head * d_head, d_model) as in TinyTransformer. Returns (batch, pos, head, d_model).
    """
    B, T, H, D = v.shape
    return torch.einsum("bphd,hdm->bphm", v, W_O.reshape(H, D, -1))


def classify_heads(share: torch.Tensor, dormant: float = 0.7, active: float = 0.3) -> list[list[str]]:
    """Label each head from its sink share (layer, head): ``dormant`` (parks attention on the sink),
    ``active`` (attends elsewhere) or ``mixed`` in between.

    >>> classify_heads(torch.tensor([[0.95, 0.1, 0.5]]))
    [['dormant', 'active', 'mixed']]
    """
    return [["dormant" if s >= dormant else "active" if s <= active else "mixed" for s in row.tolist()]
            for row in share]


def switching_heads(shares: dict[str, torch.Tensor], dormant: float = 0.7, active: float = 0.3) -> list[dict]:
    """Heads that are dormant on one input domain and active on another, strongest switch first.

    ``shares`` maps a domain name to a (layer, head) sink-share tensor. Each entry names the layer,
    head, the domain where it is most dormant and most active, and both shares.
    """
    names = list(shares)
    stacked = torch.stack([shares[n] for n in names])  # (domain, layer, head)
    hi, hi_i = stacked.max(0)
    lo, lo_i = stacked.min(0)
    out = []
    for layer, head in ((hi >= dormant) & (lo <= active)).nonzero().tolist():
        out.append({"layer": layer, "head": head, "dormant_on": names[hi_i[layer, head]],
                    "active_on": names[lo_i[layer, head]], "share_dormant": round(float(hi[layer, head]), 4),
                    "share_active": round(float(lo[layer, head]), 4)})
    return sorted(out, key=lambda d: d["share_active"] - d["share_dormant"])
