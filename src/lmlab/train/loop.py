"""One training loop for every lab study.

Read it top to bottom: build the optimizer and schedule, resume from the last checkpoint if asked,
then for each step: evaluate when due, draw the batch for this step, compute the masked
cross-entropy, step, log, checkpoint.

Determinism and resume: ``batch_fn(step)`` must depend only on the step (tasks seed a generator
from ``(seed, step)``), and the checkpoint holds weights, optimizer, schedule, RNG state and the
running loss sums. A run killed at any point and resumed with ``resume=True`` therefore ends with
the same metrics and weights as an uninterrupted run (``tests/integration/test_resume.py``).

Data-parallel (under ``torchrun``, see :mod:`lmlab.train.distributed`): rank r trains on rows ``r::N``
of ``batch_fn(step)`` through ``DistributedDataParallel``, with the loss normalised by the token count
of the whole batch, so the global batch, learning-rate schedule, logged losses and checkpoints are
those of one process (``tests/integration/test_ddp.py``). Rank 0 writes the checkpoint, which every
rank reads on resume; each rank logs the same global metrics into its own run directory.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from lmlab.config import Config, ConfigError, provenance
from lmlab.train import distributed
from lmlab.io import artifact_fingerprint, atomic_write_text, stale_reason
from lmlab.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint

log_provenance = logging.getLogger("lmlab.train")
#: modules every training run depends on (the model's own module is added per run)
TRAIN_CODE = ("lmlab.train.loop",)


class Batch(NamedTuple):
    """Inputs ``tokens`` (batch, pos); ``targets`` (batch, pos); ``mask`` (batch, pos) bool: where the loss counts.

    ``positions`` (optional, 1-D): the loss counts only at these positions in every row; the model is
    then asked for logits there alone (``model(tokens, positions=...)``), which saves compute.
    """

    tokens: torch.Tensor
    targets: torch.Tensor
    mask: torch.Tensor | None = None
    positions: torch.Tensor | None = None


@dataclass(frozen=True)
class TrainConfig(Config):
    steps: int = 1000
    optimizer: Literal["adamw", "adam", "sgd"] = "adamw"
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.99)
    eps: float = 1e-8
    weight_decay: float = 1e-4
    momentum: float = 0.0  # SGD only
    warmup_steps: int = 0
    schedule: Literal["constant", "cosine", "linear"] = "constant"
    min_lr_ratio: float = 0.0  # floor of the cosine/linear decay, as a fraction of lr
    grad_clip: float | None = None
    eval_every: int = 100
    log_every: int = 10
    checkpoint_every: int = 500
    # None: the owner fills it in (a study uses its top-level ``seed``, see :meth:`seeded`); train() uses 0
    seed: int | None = None
    device: str = "cpu"
    progress: bool = True

    def validate(self) -> None:
        if self.steps < 1:
            raise ConfigError(f"TrainConfig.steps must be >= 1, got {self.steps}")
        if self.lr <= 0:
            raise ConfigError(f"TrainConfig.lr must be > 0, got {self.lr}")
        for name in ("eval_every", "log_every", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"TrainConfig.{name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.warmup_steps <= self.steps:
            raise ConfigError(f"TrainConfig.warmup_steps must be in [0, steps={self.steps}], got {self.warmup_steps}")
        if not all(0 <= b < 1 for b in self.betas):
            raise ConfigError(f"TrainConfig.betas must be in [0, 1), got {self.betas}")
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise ConfigError("TrainConfig.grad_clip must be > 0 or null")
        if not (self.device == "cpu" or self.device.startswith("cuda") or self.device == "mps"):
            raise ConfigError(f"TrainConfig.device must be cpu, cuda[:N] or mps, got {self.device!r}")

    def seeded(self, seed: int) -> TrainConfig:
        """This config with ``seed`` filled in where it is None; an explicit ``train.seed`` is kept (so
        ``--set train.seed=5`` is not overwritten by the study's seed)."""
        return self if self.seed is not None else self.replace(seed=seed)


@dataclass
class TrainResult:
    run_dir: Path
    final_step: int
    evals: list[dict[str, Any]] = field(default_factory=list)
    stopped_early: bool = False
    resumed_from: int | None = None
    seconds: float = 0.0
    #: for summary.json's ``stages``: computed now or reused, the fingerprint, and why (see :func:`train`)
    stage: dict[str, Any] = field(default_factory=dict)


def masked_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean next-token cross-entropy over the positions where ``mask`` is true (all if None)."""
    if mask is not None:
        logits, targets = logits[mask], targets[mask]
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


def make_optimizer(params: Any, cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def lr_factor(step: int, cfg: TrainConfig) -> float:
    """Multiplier of cfg.lr at ``step``: linear warm-up, then constant, cosine or linear decay."""
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    if cfg.schedule == "constant":
        return 1.0
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    decay = 0.5 * (1 + math.cos(math.pi * progress)) if cfg.schedule == "cosine" else 1 - progress
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * decay


class MetricLog:
    """Append-only ``metrics.jsonl``: one JSON object per line, each with ``step`` and ``kind`` (train|eval)."""

    def __init__(self, path: Path):
        self.path = path

    def append(self, row: dict[str, Any]) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")

    def truncate_after(self, step: int) -> None:
        """Drop rows logged after ``step`` (they belong to the part of a killed run we redo)."""
        if self.path.exists():
            kept = [r for r in read_metrics(self.path) if r["step"] <= step and not (r["kind"] == "eval" and r["step"] == step)]
            atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in kept))


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    path = Path(path)
    if path.is_dir():
        path = path / "metrics.jsonl"
    rows = []
    lines = path.read_text().splitlines()
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            # A kill during a write can leave half a line at the end; anything else is corruption.
            if i == len(lines):
                break
            raise ValueError(f"{path}: line {i} is not valid JSON; the metrics log is corrupt") from None
    return rows


def train(
    model: torch.nn.Module,
    cfg: TrainConfig,
    batch_fn: Callable[[int], Batch],
    run_dir: str | Path,
    eval_fn: Callable[[torch.nn.Module, int], dict[str, Any]] | None = None,
    stop_fn: Callable[[list[dict[str, Any]]], bool] | None = None,
    resume: bool = False,
    meta: dict[str, Any] | None = None,
    code: tuple[str, ...] | list[str] = (),
    data: Any = None,
) -> TrainResult:
    """Train ``model`` for ``cfg.steps`` steps; returns the eval history.

    ``model(tokens)`` returns logits, or ``(logits, aux)`` with a scalar ``aux`` added to the loss.

    ``eval_fn(model, step)`` runs every ``cfg.eval_every`` steps and at the end (in eval mode, no grad);
    ``stop_fn(evals)`` may end training early after an eval (it sees every eval row so far);
    ``meta`` (configs of the task and model) is stored in each checkpoint and must match on resume.

    Provenance: the checkpoint carries :func:`lmlab.io.artifact_fingerprint` of the declared ``code`` (the modules,
    or ``"module:function"``, that make the batches and the eval rows; this loop and the model's module are always
    included), of ``meta`` and of ``data`` (a hash of input data not determined by ``meta``). Resuming, or reusing
    a finished run's metrics, with a different code or data fingerprint starts over and logs one line
    ("recomputed because lmlab.tasks.two_hop changed"); ``TrainResult.stage`` records which happened.
    """
    started = time.perf_counter()
    cfg = cfg.seeded(0)
    ddp, rank, world = distributed.active(), distributed.rank(), distributed.world_size()
    main = rank == 0  # the process that writes the checkpoint
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    # Under DDP every rank resumes from rank 0's checkpoint; each writes the (identical) metrics log into
    # its own run directory, which its copy of the study reads afterwards.
    ckpt_path = Path(distributed.broadcast_object(str(run_dir / "checkpoint.pt")))
    device = distributed.device_for(cfg.device)
    # What must match on resume: everything that changes the numbers (not the progress bar).
    meta = {"train": {k: v for k, v in cfg.to_dict().items() if k != "progress"}, **(meta or {})}
    fp = artifact_fingerprint(tuple(TRAIN_CODE) + _model_module(model) + tuple(code), _jsonable(meta), data)
    stage: dict[str, Any] = {"computed": True, "fingerprint": fp["digest"], "reason": "computed now"}

    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    model.to(device)
    opt = make_optimizer(model.parameters(), cfg)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, cfg))
    log = MetricLog(run_dir / "metrics.jsonl")

    # --- resume --------------------------------------------------------------------------
    start, loss_sum, loss_count, resumed_from = 0, 0.0, 0, None
    state = load_checkpoint(ckpt_path, map_location=device) if resume and ckpt_path.exists() else None
    if state is not None:
        if state.get("meta") != _jsonable(meta):
            raise CheckpointError(
                f"{ckpt_path} was made with a different config; use a new --out, or drop --resume to start over"
            )
        why = stale_reason(state.get("fingerprint"), fp)
        if why is not None:
            if main:
                log_provenance.warning("%s: recomputed because %s", run_dir, why)
            stage["reason"] = f"recomputed because {why}"
            state = None
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"]["torch"])
        random.setstate(_to_tuple(state["rng"]["python"]))
        start, loss_sum, loss_count = state["step"], state["loss_sum"], state["loss_count"]
        resumed_from = start
        if state.get("done"):  # the run had finished: nothing to redo
            evals = [r for r in read_metrics(log.path) if r["kind"] == "eval"]
            stage.update(computed=False, reason="reused: a finished run with the same fingerprint")
            return TrainResult(run_dir, start, evals, stopped_early=state["stopped_early"], resumed_from=start,
                               seconds=time.perf_counter() - started, stage=stage)
        stage["reason"] = f"resumed from step {start} (same fingerprint)"
        log.truncate_after(start)
    elif log.path.exists():
        log.path.unlink()  # a fresh run starts a fresh log
    evals = [r for r in read_metrics(log.path) if r["kind"] == "eval"] if log.path.exists() else []
    # DDP averages the gradients over ranks; built after the resume so all ranks start from the same state
    net = torch.nn.parallel.DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None,
        static_graph=True) if ddp else model  # same parameters used every step; finds unused ones once

    def checkpoint(step: int, done: bool = False, stopped_early: bool = False) -> None:
        if not main:
            return
        save_checkpoint(
            ckpt_path,
            {
                "step": step,
                "done": done,
                "stopped_early": stopped_early,
                "model": model.state_dict(),
                "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(),
                "rng": {"torch": torch.get_rng_state(), "python": list(random.getstate())},
                "loss_sum": loss_sum,
                "loss_count": loss_count,
                "meta": _jsonable(meta),
                "fingerprint": fp,
                "provenance": provenance(),
            },
        )

    def evaluate(step: int) -> bool:
        """Log one eval row; return True if stop_fn asks to stop."""
        if eval_fn is None:
            return False
        model.eval()
        with torch.no_grad():
            row = {"kind": "eval", "step": step, **eval_fn(model, step)}
        model.train()
        log.append(row)
        evals.append(row)
        # every rank evaluates the same weights; rank 0's decision to stop is the one all follow
        return bool(distributed.broadcast_object(bool(stop_fn and stop_fn(evals))))

    # --- the loop --------------------------------------------------------------------------
    model.train()
    stopped = False
    step = start
    bar = tqdm(total=cfg.steps, initial=start, disable=not (cfg.progress and main), desc=run_dir.name,
               dynamic_ncols=True)
    try:
        for step in range(start, cfg.steps):
            if step % cfg.eval_every == 0 and not (evals and evals[-1]["step"] == step):
                if evaluate(step):
                    stopped = True
                    break

            tokens, targets, mask, positions = batch_fn(step)
            if ddp:  # this rank's rows of the global batch
                if tokens.shape[0] < world:
                    raise ConfigError(f"batch of {tokens.shape[0]} rows cannot be split over {world} processes; "
                                      "use a larger batch or fewer processes")
                tokens, targets, mask = (distributed.shard_rows(t, rank, world) for t in (tokens, targets, mask))
            tokens, targets, mask, positions = (t.to(device) if t is not None else None
                                                for t in (tokens, targets, mask, positions))
            if positions is None:
                logits = net(tokens)
            else:  # logits only where the loss counts
                logits = net(tokens, positions=positions)
                targets, mask = targets[:, positions], (None if mask is None else mask[:, positions])
            aux = None
            if isinstance(logits, tuple):  # (logits, auxiliary loss): e.g. a VQ-VAE's codebook + commitment terms
                logits, aux = logits
            if ddp:
                loss, logged = _ddp_loss(logits, targets, mask, aux, world)
            else:
                loss = masked_cross_entropy(logits, targets, mask)
                if aux is not None:
                    loss = loss + aux
                logged = loss.item()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            sched.step()

            loss_sum += logged
            loss_count += 1
            if (step + 1) % cfg.log_every == 0:
                log.append({"kind": "train", "step": step + 1, "loss": loss_sum / loss_count,
                            "lr": sched.get_last_lr()[0]})
                bar.set_postfix(loss=f"{loss_sum / loss_count:.4f}", refresh=False)
                loss_sum, loss_count = 0.0, 0
            if (step + 1) % cfg.checkpoint_every == 0:
                checkpoint(step + 1)
            bar.update(1)
        else:
            step = cfg.steps
            if not (evals and evals[-1]["step"] == step):
                evaluate(step)  # the final eval; the run ran to the end, so it did not stop early
    finally:
        bar.close()
    checkpoint(step, done=True, stopped_early=stopped)
    return TrainResult(run_dir, step, evals, stopped_early=stopped, resumed_from=resumed_from,
                       seconds=time.perf_counter() - started, stage=stage)


def _ddp_loss(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor | None, aux: torch.Tensor | None,
              world: int) -> tuple[torch.Tensor, float]:
    """This rank's loss for backward and the global batch's loss for the log (as one process logs it).

    Backward: (this rank's token sum) / (tokens in the global batch) x world, plus this rank's aux loss;
    DDP's mean over ranks then gives the gradient of the global token mean plus the mean aux loss."""
    import torch.distributed as dist

    if mask is not None:
        logits, targets = logits[mask], targets[mask]
    token_sum = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="sum")
    stats = torch.stack([torch.tensor(float(targets.numel()), device=token_sum.device), token_sum.detach(),
                         aux.detach() if aux is not None else torch.zeros((), device=token_sum.device)])
    dist.all_reduce(stats)
    n_tokens = stats[0].clamp_min(1.0)
    loss = token_sum / n_tokens * world
    if aux is not None:
        loss = loss + aux
    return loss, (stats[1] / n_tokens + stats[2] / world).item()


def _model_module(model: torch.nn.Module) -> tuple[str, ...]:
    """The module that defines the model's class, if it is an importable file (not a script's ``__main__``)."""
    import importlib.util

    name = type(model).__module__
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return ()
    return (name,) if spec is not None and spec.origin and spec.origin.endswith(".py") else ()


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj))


def _to_tuple(obj: Any) -> Any:
    return tuple(_to_tuple(o) for o in obj) if isinstance(obj, list) else obj
