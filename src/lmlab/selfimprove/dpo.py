"""DPO from M_t with reference M_t through TRL's ``DPOTrainer`` (full fine-tuning or LoRA via peft).

The policy is trained in place: the caller's ``TrainableLM`` holds M_{t+1} afterwards (LoRA adapters are merged
back into the weights, so the next iteration starts from a plain model and its reference is that model).
CPU settings: float32 (``bf16=False``), no gradient checkpointing, ``report_to='none'``, an explicit
``processing_class``; no hub access (``HF_HUB_OFFLINE=1``, ``HF_DATASETS_OFFLINE=1`` are set here).

The DPO loss is TRL's (Rafailov et al. 2023, eq. 7):
L = -log sigmoid(beta [log pi(y_c|x)/pi_ref(y_c|x) - log pi(y_r|x)/pi_ref(y_r|x)]).
"""

from __future__ import annotations

import copy
import math
import os
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lmlab.config import Config, ConfigError

TRL_EXTRA = "pip install -e '.[selfimprove]'  (trl and peft)"


@dataclass(frozen=True)
class DPOSettings(Config):
    """The DPO step of one iteration (the optimizer's lr, warmup, schedule, seed and step cap live in the
    study's ``train`` section, a :class:`lmlab.train.TrainConfig`)."""

    beta: float = 0.1
    epochs: int = 1
    batch_size: int = 8
    grad_accum: int = 1
    max_length: int = 512  # prompt + completion tokens; longer pairs are truncated by TRL
    lora: bool = False
    lora_r: int = 16
    lora_alpha: int = 32
    #: weight snapshots taken at evenly spaced steps (the last at the end); the loop picks one on held-out prompts
    candidates: int = 1
    #: batches of pairs of similar token length (transformers' LengthGroupedSampler) instead of random batches:
    #: less padding, so fewer FLOPs per epoch; the same pairs, epochs and optimizer
    group_by_length: bool = False
    #: the reference log-probabilities of every pair computed once, by M_t before its first step (TRL's
    #: ``precompute_ref_log_probs``), instead of a forward pass of a frozen copy of M_t in every step: the same loss
    #: (the reference is M_t either way), no reference copy in memory, and one reference pass per pair rather than
    #: one per pair and epoch. Off by default: with one epoch the reference pass costs about what the in-step
    #: forward passes cost; the many-epoch configurations turn it on
    precompute_ref: bool = False
    #: pairs per forward pass: each batch of ``batch_size`` pairs runs as micro-batches of at most this many
    #: (the largest divisor of ``batch_size`` not above it) with gradient accumulation, so the optimizer step,
    #: the number of steps and the effective batch (``batch_size * grad_accum``) stay as configured, while the
    #: activations held for the backward pass shrink with the micro-batch. Measured on the default model (safety
    #: tuning, batch 8, max_length 384, 2 steps on CPU): peak RSS 13.3 GB at 8 pairs per pass, 6.1 GB at 2, the
    #: held-out log-prob margin after tuning equal to 5 decimals (docs/studies/tpo.md). 0: whole batches
    micro_batch: int = 2

    def validate(self) -> None:
        if self.beta <= 0:
            raise ConfigError(f"dpo.beta ({self.beta}) must be > 0")
        for k in ("epochs", "batch_size", "grad_accum", "max_length", "lora_r", "candidates"):
            if getattr(self, k) < 1:
                raise ConfigError(f"dpo.{k} ({getattr(self, k)}) must be >= 1")
        if self.micro_batch < 0:
            raise ConfigError(f"dpo.micro_batch ({self.micro_batch}) must be >= 0 (0: whole batches of dpo.batch_size)")

    @property
    def per_pass(self) -> int:
        """Pairs per forward pass: the largest divisor of ``batch_size`` that is at most ``micro_batch``."""
        if self.micro_batch == 0 or self.micro_batch >= self.batch_size:
            return self.batch_size
        return max(d for d in range(1, self.micro_batch + 1) if self.batch_size % d == 0)


def import_trl() -> Any:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    try:
        import trl
    except ImportError:
        raise ConfigError(f"DPO needs TRL: {TRL_EXTRA}") from None
    return trl


def n_steps(n_pairs: int, dpo: DPOSettings, max_steps: int) -> int:
    per_epoch = math.ceil(n_pairs / (dpo.batch_size * dpo.grad_accum))
    return max(1, min(max_steps, per_epoch * dpo.epochs))


def run_dpo(lm: Any, pairs: Sequence[dict[str, str]], dpo: DPOSettings, train: Any, out_dir: str | Path,
            progress: bool = False) -> dict[str, Any]:
    """Train ``lm`` (a ``TrainableLM``) on ``pairs`` (``{"prompt", "chosen", "rejected"}``, prompt = the full
    model input). Returns the log (per-step loss, reward margins and accuracies), the step count, seconds,
    and ``snapshots``: ``[(step, state_dict)]`` at the candidate steps (CPU copies; the last is the final model).
    """
    if dpo.lora and dpo.candidates > 1:
        raise ConfigError("dpo.candidates > 1 needs full fine-tuning (dpo.lora=false): LoRA runs keep only the final model")
    if not pairs:
        raise ConfigError("DPO got no preference pairs (every prompt's samples tied or were malformed); "
                          "raise K or the number of prompts, or use a judge with finer scores")
    for k in ("prompt", "chosen", "rejected"):
        if any(not isinstance(p.get(k), str) or not p[k] for p in pairs):
            raise ConfigError(f"a DPO pair has an empty or missing '{k}'; every pair needs prompt, chosen and rejected text")
    import_trl()
    import datasets
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import DPOConfig, DPOTrainer

    model, tok = lm.hf_model, lm.hf_tokenizer
    steps = n_steps(len(pairs), dpo, train.steps)
    at = sorted({max(1, round(steps * (k + 1) / dpo.candidates)) for k in range(dpo.candidates)})
    snapshots: list[tuple[int, dict[str, Any]]] = []

    class Snap(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if state.global_step in at[:-1]:
                m = kw["model"]
                snapshots.append((state.global_step, _state_dict(m)))

    with warnings.catch_warnings():  # transformers renames gradient_checkpointing; TRL still reads the old name
        warnings.simplefilter("ignore", FutureWarning)
        args = DPOConfig(
            output_dir=str(Path(out_dir) / "trl"), bf16=False, fp16=False, gradient_checkpointing=False, report_to="none",
            use_cpu=str(getattr(lm, "device", "cpu")) == "cpu", per_device_train_batch_size=dpo.per_pass,
            gradient_accumulation_steps=dpo.grad_accum * (dpo.batch_size // dpo.per_pass), max_steps=steps, learning_rate=train.lr, beta=dpo.beta,
            lr_scheduler_type=train.schedule if train.schedule != "constant" else "constant_with_warmup",
            warmup_steps=train.warmup_steps, weight_decay=train.weight_decay,
            max_grad_norm=train.grad_clip if train.grad_clip is not None else 1e9, logging_steps=1, save_strategy="no",
            seed=int(train.seed or 0), data_seed=int(train.seed or 0), max_length=dpo.max_length,
            disable_tqdm=not progress, dataloader_num_workers=0, remove_unused_columns=False,
            train_sampling_strategy="group_by_length" if dpo.group_by_length else "random",
            precompute_ref_log_probs=dpo.precompute_ref)
    if not progress:
        datasets.disable_progress_bars()
    rows = [{"prompt": p["prompt"], "chosen": p["chosen"], "rejected": p["rejected"]} for p in pairs]
    if dpo.group_by_length:  # the sampler's key: prompt + the longer completion, in tokens
        def n(text: str) -> int:
            return len(tok(text, add_special_tokens=False)["input_ids"])

        for r in rows:
            r["length"] = n(r["prompt"]) + max(n(r["chosen"]), n(r["rejected"]))
    ds = Dataset.from_list(rows)
    peft_config, ref = None, None
    if dpo.lora:
        try:
            from peft import LoraConfig
        except ImportError:
            raise ConfigError(f"dpo.lora needs peft: {TRL_EXTRA}") from None
        peft_config = LoraConfig(r=dpo.lora_r, lora_alpha=dpo.lora_alpha, lora_dropout=0.0, task_type="CAUSAL_LM",
                                 target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                                 "down_proj"])
    else:
        model.train()
        for p in model.parameters():
            p.requires_grad_(True)
        if not dpo.precompute_ref:
            # the reference is M_t itself, frozen; TRL would otherwise reload it from config._name_or_path (M_0)
            ref = copy.deepcopy(model).eval()
            for p in ref.parameters():
                p.requires_grad_(False)
        # with precompute_ref and no ref_model, TRL computes the reference log-probs with `model` itself before
        # training starts, i.e. with M_t, and keeps no reference model
    fit = fit_counts(tok, pairs, dpo.max_length)
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        trainer = DPOTrainer(model=model, ref_model=ref, args=args, train_dataset=ds, processing_class=tok,
                             peft_config=peft_config, callbacks=[Snap()])
        if not progress:
            from transformers.trainer_callback import PrinterCallback, ProgressCallback

            trainer.remove_callback(PrinterCallback)
            trainer.remove_callback(ProgressCallback)
        built = time.perf_counter()
        trainer.train()
    seconds = time.perf_counter() - started
    history = list(trainer.state.log_history)
    if dpo.lora:
        merged = trainer.model.merge_and_unload()
        if merged is not model:  # peft injects its layers into `model` and merges them back in place
            model.load_state_dict(merged.state_dict())
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    snapshots.append((steps, _state_dict(model) if len(at) > 1 else None))  # None: the model as it is now
    del trainer, ref
    # init_seconds: building the trainer (tokenizing the pairs; with precompute_ref, the reference pass too)
    return {"steps": steps, "seconds": round(seconds, 2), "init_seconds": round(built - started, 2), "n_pairs": len(pairs),
            "pairs_per_pass": dpo.per_pass, "max_length": dpo.max_length, **fit,
            "snapshot_steps": [s for s, _ in snapshots], "log": _log_rows(history), "snapshots": snapshots}


def fit_counts(tok: Any, pairs: Sequence[dict[str, str]], max_length: int) -> dict[str, int]:
    """How many pairs TRL will cut (prompt + a completion longer than ``max_length`` tokens) or drop (the prompt
    alone reaches ``max_length``: TRL's keep_start truncation would leave no completion token)."""
    cut = dropped = 0
    for p in pairs:
        n = len(tok(p["prompt"], add_special_tokens=False)["input_ids"])
        m = max(len(tok(p[k], add_special_tokens=False)["input_ids"]) for k in ("chosen", "rejected"))
        dropped += n >= max_length
        cut += n < max_length < n + m + 1
    return {"pairs_truncated": cut, "pairs_dropped_by_max_length": dropped}


def _log_rows(rows: list[dict[str, Any]]) -> list[dict[str, float]]:
    keep = ("step", "loss", "rewards/margins", "rewards/accuracies", "rewards/chosen", "rewards/rejected",
            "logps/chosen", "logps/rejected", "learning_rate")
    return [{k: float(r[k]) for k in keep if k in r} for r in rows if "loss" in r]


def _state_dict(model: Any) -> dict[str, Any]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
