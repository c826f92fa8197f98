"""DPO safety tuning on the bundled HH-RLHF harmless-base pairs (chosen = the human-preferred, usually more
harmless, reply), for the cross-paper MULI experiment: does detection from first-token logits track the base
model's safety alignment?

    lmlab selfimprove safety-tune --out runs/safety-tuned --threads 1      # writes runs/safety-tuned/model
    lmlab run muli --quick --threads 1 --model runs/safety-tuned/model --out runs/muli-tuned

The bundled subsample (256 rows of harmless-base test) is split once by a seeded permutation: ``n_heldout`` pairs
are never trained on. On them: the implicit-reward accuracy after training (the share of held-out pairs whose DPO
reward margin beta [(log pi - log pi_ref)(chosen) - (log pi - log pi_ref)(rejected)] is positive, with a CI), and
the mean log-probability margin log pi(chosen) - log pi(rejected) before and after.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lmlab.config import Config, ConfigError, LMConfig
from lmlab.io import atomic_write_json
from lmlab.selfimprove.dpo import DPOSettings, run_dpo
from lmlab.train.loop import TrainConfig


@dataclass(frozen=True)
class SafetyTuneConfig(Config):
    seed: int = 0
    lm: LMConfig = field(default_factory=lambda: LMConfig(batch_size=8))
    train: TrainConfig = field(default_factory=lambda: TrainConfig(steps=100_000, lr=1e-5, weight_decay=0.0,
                                                                   progress=False))
    dpo: DPOSettings = field(default_factory=lambda: DPOSettings(beta=0.1, epochs=1, batch_size=8, max_length=384))
    n_train: int = 192
    n_heldout: int = 64
    max_prompt_chars: int = 600

    def validate(self) -> None:
        if self.n_train < 1 or self.n_heldout < 1:
            raise ConfigError("n_train and n_heldout must be >= 1")


def hh_split(n_train: int, n_heldout: int, seed: int, max_prompt_chars: int) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """Chosen / rejected replies of the bundled HH pairs, split into disjoint train and held-out lists."""
    from lmlab.rewardeval.data import BUNDLED_HH, clip_prompt, read_preference

    ds = read_preference(BUNDLED_HH, seed=seed)
    if n_train + n_heldout > len(ds):
        raise ConfigError(f"n_train + n_heldout ({n_train + n_heldout}) exceeds the {len(ds)} bundled HH-RLHF pairs")
    rows = []
    for p, a, b, y in zip(ds.prompt, ds.response_1, ds.response_2, ds.label):
        if y == 0:
            continue
        rows.append({"transcript": clip_prompt(p, max_prompt_chars), "chosen": a if y > 0 else b,
                     "rejected": b if y > 0 else a})
    order = np.random.default_rng([seed, 31337]).permutation(len(rows))
    rows = [rows[i] for i in order]
    return rows[n_heldout:n_heldout + n_train], rows[:n_heldout]


def _pairs(lm: Any, rows: list[dict[str, str]]) -> list[dict[str, str]]:
    from lmlab.rewardeval.data import transcript_messages

    return [{"prompt": lm.chat_prompt(transcript_messages(r["transcript"])), "chosen": r["chosen"],
             "rejected": r["rejected"]} for r in rows]


def _logp(lm: Any, pairs: list[dict[str, str]]) -> tuple[np.ndarray, np.ndarray]:
    prompts = [p["prompt"] for p in pairs]
    c = np.asarray(lm.logprobs(prompts, [p["chosen"] for p in pairs]), float)
    r = np.asarray(lm.logprobs(prompts, [p["rejected"] for p in pairs]), float)
    return c, r


def safety_tune(cfg: SafetyTuneConfig, out: str | Path, progress: bool = False) -> dict[str, Any]:
    """DPO the model of ``cfg.lm`` on HH harmless pairs; writes ``out/model`` and ``out/safety.json``."""
    from lmlab.rewardeval.metrics import bootstrap_mean_ci
    from lmlab.selfimprove.arms import load_trainable

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    lm = load_trainable(cfg.lm)
    train_rows, held_rows = hh_split(cfg.n_train, cfg.n_heldout, cfg.seed, cfg.max_prompt_chars)
    train_pairs, held_pairs = _pairs(lm, train_rows), _pairs(lm, held_rows)
    c0, r0 = _logp(lm, held_pairs)
    res = run_dpo(lm, train_pairs, cfg.dpo, cfg.train.seeded(cfg.seed), out, progress=progress)
    res.pop("snapshots")
    c1, r1 = _logp(lm, held_pairs)
    reward_margin = cfg.dpo.beta * ((c1 - c0) - (r1 - r0))  # DPO's implicit reward margin on held-out pairs
    correct = (reward_margin > 0).astype(float)
    lm.hf_model.save_pretrained(out / "model")
    lm.hf_tokenizer.save_pretrained(out / "model")
    summary = {"n_train": len(train_pairs), "n_heldout": len(held_pairs), "dpo": res,
               "heldout_logp_margin_before": float(np.mean(c0 - r0)), "heldout_logp_margin_after": float(np.mean(c1 - r1)),
               "heldout_reward_accuracy": float(correct.mean()),
               "heldout_reward_accuracy_ci": list(bootstrap_mean_ci(correct, seed=cfg.seed)),
               "model_dir": str(out / "model"),
               "next": f"lmlab run muli --quick --threads 1 --model {out / 'model'} --out runs/muli-safety-tuned"}
    atomic_write_json(out / "safety.json", summary)
    return summary


def main_json(summary: dict[str, Any]) -> str:
    return json.dumps({k: v for k, v in summary.items() if k != "dpo"} | {"dpo_steps": summary["dpo"]["steps"]}, indent=2)
