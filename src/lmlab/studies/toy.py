"""A seconds-long study for exercising sweeps, DDP and the report; not a paper (not in ``lmlab list``).

Run it by path, as any study of your own: ``lmlab run lmlab.studies.toy:ToyStudy`` or
``lmlab sweep lmlab.studies.toy:ToyStudy --seeds 0-2 --grid train.lr=0.003,0.03``.

A one-layer tiny transformer learns to copy its input token (``targets = tokens``) through the lab
trainer, with checkpoints. Two claims: the final loss falls below ``MAX_FINAL_LOSS`` (passes at a
useful learning rate, fails at a tiny one), and the final loss is at most ``MAX_LOSS_RATIO`` of the
initial (chance) loss. ``fail_seeds`` makes those seeds raise, to test how a sweep records a failed
trial; ``step_sleep`` slows every step, to test killing a run mid-way. Every ``execute`` appends a line
to ``executions.log`` in the run directory, so a test can count how often a trial really ran.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from lmlab.config import Config, ConfigError
from lmlab.nn import TinyConfig, TinyTransformer
from lmlab.studies.base import Claim, Result, Study, at_most, pyplot, save_figure
from lmlab.train import Batch, TrainConfig, read_metrics, train

MAX_FINAL_LOSS = 0.5
MAX_LOSS_RATIO = 0.5


@dataclass(frozen=True)
class ToyConfig(Config):
    seed: int = 0
    d_vocab: int = 8
    n_ctx: int = 6
    d_model: int = 16
    batch_size: int = 16
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        steps=60, lr=0.03, eval_every=20, log_every=5, checkpoint_every=10, progress=False))
    fail_seeds: tuple[int, ...] = ()
    step_sleep: float = 0.0

    def validate(self) -> None:
        if self.d_vocab < 2 or self.n_ctx < 1 or self.d_model < 1 or self.batch_size < 1:
            raise ConfigError("ToyConfig: d_vocab >= 2, and n_ctx, d_model, batch_size must be positive")
        if self.step_sleep < 0:
            raise ConfigError(f"ToyConfig.step_sleep must be >= 0, got {self.step_sleep}")


def toy_batch(cfg: ToyConfig, step: int, batch_size: int | None = None) -> Batch:
    g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
    tokens = torch.randint(0, cfg.d_vocab, (batch_size or cfg.batch_size, cfg.n_ctx), generator=g)
    mask = torch.rand(tokens.shape, generator=g) < 0.8  # a ragged mask: rows count different numbers of tokens
    return Batch(tokens, tokens.clone(), mask)


def toy_model(cfg: ToyConfig) -> TinyTransformer:
    torch.manual_seed(cfg.seed)
    return TinyTransformer(TinyConfig(d_vocab=cfg.d_vocab, n_ctx=cfg.n_ctx, n_layers=1, d_model=cfg.d_model,
                                      n_heads=1))


class ToyStudy(Study):
    name = "toy"
    title = "toy copy task (tests sweeps and DDP)"
    config_cls = ToyConfig

    def quick_config(self) -> ToyConfig:
        return ToyConfig()

    def control_config(self, cfg: ToyConfig) -> ToyConfig:
        return cfg.replace(train=cfg.train.replace(lr=1e-9))

    def execute(self, cfg: ToyConfig, out: Path, quick: bool, resume: bool) -> Result:
        with (out / "executions.log").open("a") as f:
            f.write(json.dumps({"seed": cfg.seed, "time": time.time(), "pid": os.getpid()}) + "\n")
        if cfg.seed in cfg.fail_seeds:
            raise RuntimeError(f"toy study: seed {cfg.seed} is in fail_seeds")

        def batch_fn(step: int) -> Batch:
            if cfg.step_sleep:
                time.sleep(cfg.step_sleep)
            return toy_batch(cfg, step)

        held_out = toy_batch(cfg, 10**6, 64)

        def eval_fn(model: torch.nn.Module, step: int) -> dict[str, float]:
            logits = model(held_out.tokens)
            return {"loss": torch.nn.functional.cross_entropy(logits[held_out.mask], held_out.targets[held_out.mask]).item()}

        res = train(toy_model(cfg), cfg.train, batch_fn, out, eval_fn=eval_fn, resume=resume,
                    meta={"toy": {k: v for k, v in cfg.to_dict().items() if k != "train"}},
                    code=("lmlab.studies.toy:toy_batch", "lmlab.studies.toy:toy_model"))
        first, last = res.evals[0]["loss"], res.evals[-1]["loss"]
        plt = pyplot()
        fig, ax = plt.subplots(figsize=(4, 3))
        rows = read_metrics(out)
        ax.plot([r["step"] for r in rows if r["kind"] == "train"], [r["loss"] for r in rows if r["kind"] == "train"])
        ax.set(xlabel="step", ylabel="train loss", title=f"toy, seed {cfg.seed}")
        figures = [save_figure(fig, out, "toy-loss.png")]
        claims = [
            Claim.judged("learns", "the model learns to copy its input", paper_value=0.0, measured=round(last, 5),
                         rule=at_most(last, MAX_FINAL_LOSS, what="final held-out loss")),
            Claim.judged("loss-halves", "training at least halves the chance-level loss", paper_value=MAX_LOSS_RATIO,
                         measured=round(last / first, 5),
                         rule=at_most(last / first, MAX_LOSS_RATIO, what="final / initial loss")),
        ]
        return Result(claims, metrics={"initial_loss": first, "final_loss": last, "chance": math.log(cfg.d_vocab),
                                       "resumed_from": res.resumed_from}, figures=figures, task_version="toy/1",
                      stages={"train": res.stage})
