"""Training throughput (tokens/s) of lmlab's TinyTransformer against its peers, on CPU by default.

Same model shape and batch for everyone (the reference config of issue 2): 3 layers, d_model 64,
1 head, GELU MLP 256, vocab 40, batch 512 x 24 tokens, one AdamW step per iteration.

Contenders:
  lmlab                   TinyTransformer, nothing recorded (fused attention)
  lmlab_record_patterns   TinyTransformer recording every layer's attention pattern each step
  transformer_lens        HookedTransformer (transformer-lens < 4), no hooks
  transformer_lens_cache  HookedTransformer saving every attention pattern each step
  plain_torch             a plain PyTorch model of the same shape with fused attention (written
                          here): the practical limit

Prints one JSON object. Goals: lmlab >= 1.5x transformer_lens, >= 0.95x plain_torch, and
recording all patterns costs < 30% of lmlab's throughput.

    python benchmarks/train_throughput.py [--steps 12] [--repeats 3] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable
from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch import nn

LAYERS, D_MODEL, HEADS, D_MLP, VOCAB, BATCH, CTX = 3, 64, 1, 256, 40, 512, 24


class PlainBlock(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(D_MODEL, bias=False), nn.LayerNorm(D_MODEL, bias=False)
        self.qkv = nn.Linear(D_MODEL, 3 * D_MODEL, bias=False)
        self.proj = nn.Linear(D_MODEL, D_MODEL, bias=False)
        self.fc1, self.fc2 = nn.Linear(D_MODEL, D_MLP, bias=False), nn.Linear(D_MLP, D_MODEL, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, _ = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(B, T, 3, HEADS, D_MODEL // HEADS).unbind(2)
        y = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True)
        x = x + self.proj(y.transpose(1, 2).reshape(B, T, D_MODEL))
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))


class PlainModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb, self.pos = nn.Embedding(VOCAB, D_MODEL), nn.Parameter(torch.zeros(CTX, D_MODEL))
        self.blocks = nn.ModuleList(PlainBlock() for _ in range(LAYERS))
        self.ln, self.unembed = nn.LayerNorm(D_MODEL, bias=False), nn.Linear(D_MODEL, VOCAB, bias=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.emb(tokens) + self.pos[: tokens.shape[1]]
        for b in self.blocks:
            x = b(x)
        return self.unembed(self.ln(x))


def lmlab_model() -> nn.Module:
    from lmlab.nn import TinyConfig, TinyTransformer

    return TinyTransformer(TinyConfig(d_vocab=VOCAB, n_ctx=CTX, n_layers=LAYERS, d_model=D_MODEL, n_heads=HEADS,
                                      d_mlp=D_MLP, act_fn="gelu"))


def tl_model() -> nn.Module:
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    cfg = HookedTransformerConfig(n_layers=LAYERS, d_model=D_MODEL, n_heads=HEADS, d_head=D_MODEL // HEADS, d_mlp=D_MLP,
                                  d_vocab=VOCAB, n_ctx=CTX, act_fn="gelu", normalization_type="LN", device="cpu")
    return HookedTransformer(cfg)


def measure(model: nn.Module, ctx: Callable[[], object], steps: int, repeats: int, device: str) -> float:
    """Median tokens/s over `repeats` timings of `steps` AdamW steps, after 3 warm-up steps."""
    model.to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, VOCAB, (BATCH, CTX), generator=g).to(device)
    y = torch.randint(0, VOCAB, (BATCH, CTX), generator=g).to(device)

    def step() -> None:
        with ctx():
            logits = model(x)
        loss = F.cross_entropy(logits.reshape(-1, VOCAB), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(3):
        step()
    rates = []
    for _ in range(repeats):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        rates.append(steps * BATCH * CTX / (time.perf_counter() - t0))
    return statistics.median(rates)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    torch.manual_seed(0)

    results: dict[str, float | None] = {}
    notes: dict[str, str] = {}
    m = lmlab_model()
    results["lmlab"] = measure(m, nullcontext, args.steps, args.repeats, args.device)
    results["lmlab_record_patterns"] = measure(m, lambda: m.record("blocks.*.attn.hook_pattern"), args.steps,
                                               args.repeats, args.device)
    results["plain_torch"] = measure(PlainModel(), nullcontext, args.steps, args.repeats, args.device)
    try:
        tl = tl_model()
        results["transformer_lens"] = measure(tl, nullcontext, args.steps, args.repeats, args.device)
        store: dict[str, torch.Tensor] = {}

        def save(t: torch.Tensor, hook: object) -> None:
            store[hook.name] = t.detach()  # type: ignore[attr-defined]

        results["transformer_lens_cache"] = measure(
            tl, lambda: tl.hooks(fwd_hooks=[(lambda n: n.endswith("hook_pattern"), save)]), args.steps, args.repeats,
            args.device)
    except ImportError as e:
        results["transformer_lens"] = results["transformer_lens_cache"] = None
        notes["transformer_lens"] = f"not installed ({e}); pip install -e '.[bench]'"

    lm, tl_rate, plain = results["lmlab"], results["transformer_lens"], results["plain_torch"]
    ratios = {
        "lmlab_vs_transformer_lens": lm / tl_rate if tl_rate else None,
        "lmlab_record_vs_transformer_lens_cache": (results["lmlab_record_patterns"] / results["transformer_lens_cache"]
                                                   if results.get("transformer_lens_cache") else None),
        "lmlab_vs_plain_torch": lm / plain,
        "recording_cost": 1 - results["lmlab_record_patterns"] / lm,
    }
    goals = {
        "lmlab >= 1.5x transformer_lens": None if ratios["lmlab_vs_transformer_lens"] is None
        else ratios["lmlab_vs_transformer_lens"] >= 1.5,
        "lmlab >= 0.95x plain_torch": ratios["lmlab_vs_plain_torch"] >= 0.95,
        "recording all patterns costs < 30%": ratios["recording_cost"] < 0.30,
    }
    print(json.dumps({
        "benchmark": "train_throughput",
        "unit": "tokens/s",
        "config": {"n_layers": LAYERS, "d_model": D_MODEL, "n_heads": HEADS, "d_mlp": D_MLP, "d_vocab": VOCAB,
                   "batch": BATCH, "n_ctx": CTX, "optimizer": "AdamW", "device": args.device,
                   "steps": args.steps, "repeats": args.repeats},
        "results": {k: (round(v) if v else v) for k, v in results.items()},
        "ratios": {k: (round(v, 3) if v is not None else None) for k, v in ratios.items()},
        "goals_met": goals,
        "notes": notes,
        "machine": {"torch": str(torch.__version__), "threads": torch.get_num_threads(), "platform": platform.platform()},
    }, indent=2))


if __name__ == "__main__":
    main()
