"""Distil answer-reusability into an embedding (Zhu, Zhu & Jiao 2024, arXiv 2402.01173).

The student predicts the probability that the cached answer of x' serves x from the cosine similarity
of the two prompts: ``q = sigmoid(a * cos(phi(x), phi(x')) + b)`` with ``a``, ``b`` learned together with
the encoder ``phi``. The teacher gives ``p`` (here: the knowledge base's 0/1 label). Two losses:

- binary cross-entropy: ``-[p log q + (1 - p) log(1 - q)]``;
- squared log-difference (SLD): ``(log q - log p)^2``. With hard labels log 0 is undefined, so p is
  clipped to ``[eps, 1 - eps]`` first (``eps`` in :class:`DistillConfig`, 0.05 by default).

Training is a plain loop over shuffled pairs (AdamW, linear warm-up then decay), checkpointed atomically
every ``ckpt_every`` steps and resumed from the checkpoint when one matches the config.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from lmlab.config import Config, ConfigError
from lmlab.io import artifact_fingerprint, atomic_path, stale_reason


@dataclass(frozen=True)
class DistillConfig(Config):
    loss: Literal["bce", "sld"] = "bce"
    eps: float = 0.05  # SLD: hard labels p in {0, 1} are clipped to [eps, 1 - eps]
    steps: int = 150
    batch_size: int = 32
    lr: float = 3e-5  # encoder
    lr_head: float = 1e-2  # a and b
    a_init: float = 10.0
    b_init: float = -7.0  # q = 0.5 at cos = 0.7
    warmup: int = 10
    max_seq_len: int = 48
    shuffle_labels: bool = False  # negative control: the labels carry no information
    ckpt_every: int = 50
    seed: int = 0

    def validate(self) -> None:
        if self.loss not in ("bce", "sld"):
            raise ConfigError(f"DistillConfig.loss: {self.loss!r}; choose 'bce' or 'sld'")
        if not 0 < self.eps < 0.5:
            raise ConfigError(f"DistillConfig.eps ({self.eps}) must be in (0, 0.5)")
        if self.steps < 0 or self.batch_size < 2:
            raise ConfigError("DistillConfig: steps must be >= 0 and batch_size >= 2")


def student_q(cos: Any, a: Any, b: Any) -> Any:
    """q = sigmoid(a * cos + b) (torch tensors)."""
    import torch

    return torch.sigmoid(a * cos + b)


def bce_loss(cos: Any, p: Any, a: Any, b: Any) -> Any:
    """Mean binary cross-entropy of q against p, computed from the logit for stability."""
    import torch.nn.functional as F

    return F.binary_cross_entropy_with_logits(a * cos + b, p)


def sld_loss(cos: Any, p: Any, a: Any, b: Any, eps: float = 0.05) -> Any:
    """Mean squared log-difference (log q - log p)^2 with p clipped to [eps, 1 - eps]."""
    import torch
    import torch.nn.functional as F

    log_q = F.logsigmoid(a * cos + b)
    log_p = torch.log(p.clamp(eps, 1 - eps))
    return ((log_q - log_p) ** 2).mean()


def auc(scores: Sequence[float], labels: Sequence[int]) -> float:
    """ROC AUC by the rank-sum (Mann-Whitney U) formula with average ranks for ties; equals
    sklearn.metrics.roc_auc_score, without needing the dependency in the cache's hot path."""
    from scipy.stats import rankdata

    s, y = np.asarray(scores, dtype=float), np.asarray(labels).astype(bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    r = rankdata(s)
    return float((r[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def pair_cosines(encode: Callable[[list[str]], np.ndarray], a: Sequence[str], b: Sequence[str]) -> np.ndarray:
    """cos(phi(a_i), phi(b_i)) for each pair, encoding each distinct text once."""
    texts = sorted(set(a) | set(b))
    pos = {t: i for i, t in enumerate(texts)}
    v = encode(texts)
    ia, ib = np.array([pos[t] for t in a]), np.array([pos[t] for t in b])
    return np.einsum("ij,ij->i", v[ia], v[ib])


def _fingerprint(cfg: DistillConfig, pairs: Sequence[tuple[str, str, float]], base: Any = None) -> dict[str, Any]:
    """:func:`lmlab.io.artifact_fingerprint` of this module's code, the config (and ``base``: what identifies the
    starting model) and the pairs."""
    h = hashlib.sha256()
    for x in pairs:
        h.update(f"{x[0]}\0{x[1]}\0{x[2]}\n".encode())
    return artifact_fingerprint((__name__,), {"cfg": cfg.to_dict(), "base": base}, h.hexdigest())


def distill(model: Any, pairs: Sequence[tuple[str, str, float]], cfg: DistillConfig, ckpt: Path | None = None,
            progress: bool = False, log: Callable[[dict[str, Any]], None] | None = None,
            base: Any = None) -> dict[str, Any]:
    """Fine-tune a sentence-transformers ``model`` in place on (text_a, text_b, p) pairs; returns a, b, the loss
    curve and ``stage`` (for ``summary.json``: computed now or reused, the fingerprint, why). With ``ckpt``, resumes
    from it when its fingerprint (this module's code, the config, ``base`` (the starting model's identity) and the
    pairs) matches; otherwise starts over and logs one line saying what changed."""
    import torch
    from tqdm import tqdm

    fp_parts = _fingerprint(cfg, pairs, base)
    fp = fp_parts["digest"]
    stage: dict[str, Any] = {"computed": True, "fingerprint": fp, "reason": "computed now"}
    rng = random.Random(cfg.seed)
    torch.manual_seed(cfg.seed)
    labels = [float(p) for _, _, p in pairs]
    if cfg.shuffle_labels:
        rng.shuffle(labels)
    data = [(x[0], x[1], y) for x, y in zip(pairs, labels)]
    model.max_seq_length = cfg.max_seq_len
    a = torch.nn.Parameter(torch.tensor(float(cfg.a_init)))
    b = torch.nn.Parameter(torch.tensor(float(cfg.b_init)))
    opt = torch.optim.AdamW([{"params": list(model.parameters()), "lr": cfg.lr, "weight_decay": 0.01},
                             {"params": [a, b], "lr": cfg.lr_head, "weight_decay": 0.0}])
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / max(cfg.warmup, 1))
                                              * max(0.0, 1 - s / max(cfg.steps, 1)))
    step, curve = 0, []
    if ckpt is not None and Path(ckpt).exists():
        from lmlab.train.checkpoint import load_data

        state = load_data(ckpt)  # weights only: a file in a run directory never runs code
        why = stale_reason(state.get("fingerprint_parts"), fp_parts)
        if why is not None:
            logging.getLogger("lmlab.cache").warning("%s: recomputed because %s", ckpt, why)
            stage["reason"] = f"recomputed because {why}"
        else:
            model.load_state_dict(state["model"])
            with torch.no_grad():
                a.copy_(state["a"])
                b.copy_(state["b"])
            opt.load_state_dict(state["opt"])
            sched.load_state_dict(state["sched"])
            step, curve = int(state["step"]), list(state["curve"])
            rng.setstate(state["rng"])
            torch.set_rng_state(state["torch_rng"])  # dropout masks continue as if never interrupted

    def save() -> None:
        if ckpt is None:
            return
        with atomic_path(ckpt) as tmp:
            torch.save({"fingerprint": fp, "fingerprint_parts": fp_parts, "model": model.state_dict(), "a": a.detach(), "b": b.detach(),
                        "opt": opt.state_dict(), "sched": sched.state_dict(), "step": step, "curve": curve,
                        "rng": rng.getstate(), "torch_rng": torch.get_rng_state()}, tmp)

    if step >= cfg.steps:
        stage.update(computed=False, reason="reused: a finished checkpoint with the same fingerprint")
    elif step:
        stage["reason"] = f"resumed from step {step} (same fingerprint)"
    model.train()
    bar = tqdm(total=cfg.steps, initial=step, disable=not progress, desc=f"distil ({cfg.loss})")
    while step < cfg.steps:
        batch = [data[rng.randrange(len(data))] for _ in range(cfg.batch_size)]
        fa = model.tokenize([x[0] for x in batch])
        fb = model.tokenize([x[1] for x in batch])
        ea = model(fa)["sentence_embedding"]
        eb = model(fb)["sentence_embedding"]
        cos = torch.nn.functional.cosine_similarity(ea, eb, dim=-1)
        p = torch.tensor([x[2] for x in batch], dtype=torch.float32)
        loss = bce_loss(cos, p, a, b) if cfg.loss == "bce" else sld_loss(cos, p, a, b, cfg.eps)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(model.parameters()), 1.0)
        opt.step()
        sched.step()
        step += 1
        curve.append(round(loss.item(), 5))
        if log is not None:
            log({"step": step, "loss": loss.item(), "a": a.item(), "b": b.item()})
        bar.update(1)
        if step % cfg.ckpt_every == 0 or step == cfg.steps:
            save()
    bar.close()
    model.eval()
    if not math.isfinite(a.item()):
        raise RuntimeError("distillation diverged (a is not finite); lower lr_head")
    return {"a": a.item(), "b": b.item(), "curve": curve, "steps": step, "fingerprint": fp, "stage": stage}
