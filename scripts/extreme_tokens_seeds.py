"""The 1-layer softmax+Adam Bigram-Backcopy model of `lmlab run extreme-tokens --quick`, over several seeds.

Trains only the `softmax_adam_1l` variant (the study's quick config, the same code path: `train` and
`bb_metrics`), one run directory per seed, and prints one JSON row per seed and the spread of the claims'
quantities (non-trigger and trigger BOS share, value-drain ratio, backcopy and bigram loss):

    PYTHONPATH=src heavy python scripts/extreme_tokens_seeds.py --seeds 0 1 2 --out runs/et-seeds
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from lmlab.nn import TinyTransformer
from lmlab.studies.extreme_tokens import ExtremeTokensStudy, bb_metrics
from lmlab.tasks.bigram_backcopy import BigramBackcopyTask
from lmlab.train import train


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--out", type=Path, default=Path("runs/extreme-tokens-1l-seeds"))
    ap.add_argument("--variant", default="softmax_adam_1l")
    args = ap.parse_args()
    torch.set_num_threads(1)
    base = ExtremeTokensStudy().quick_config()
    rows = []
    for seed in args.seeds:
        cfg = base.replace(seed=seed)
        v = next(v for v in cfg.variants if v.name == args.variant)
        vcfg = v.apply(cfg)
        task = BigramBackcopyTask(cfg.task, seed=seed)
        x_eval = task.eval_sample(cfg.eval_size)
        model_cfg = vcfg.model.replace(d_vocab=task.d_vocab, n_ctx=task.n_ctx)
        torch.manual_seed(seed)
        model = TinyTransformer(model_cfg)
        res = train(model, vcfg.train.seeded(seed).replace(progress=False), lambda step: task.batch(step, cfg.batch_size),
                    args.out / f"{v.name}-seed{seed}", eval_fn=lambda m, step: bb_metrics(m, task, x_eval), resume=True,
                    meta={"task": cfg.task.to_dict(), "task_version": task.version, "model": model_cfg.to_dict(),
                          "batch_size": cfg.batch_size, "variant": v.to_dict()},
                    code=("lmlab.tasks.bigram_backcopy", "lmlab.analysis.extreme_tokens",
                          "lmlab.studies.extreme_tokens:bb_metrics"))
        f = res.evals[-1]
        row = {"seed": seed, "variant": v.name, "steps": f["step"], "lr": vcfg.train.lr,
               "sink_nontrigger": f["sink_nontrigger"][0], "sink_trigger": f["sink_trigger"][0],
               "value_out_ratio": f["value_out_ratio"][0], "backcopy_loss": f["backcopy_loss"],
               "bigram_loss": f["bigram_loss"], "oracle_bigram_ce": task.oracle_bigram_ce(x_eval),
               "sink_last5_evals": [e["sink_nontrigger"][0] for e in res.evals[-5:]],
               "train_seconds": round(res.seconds, 1), "stage": res.stage["reason"]}
        rows.append(row)
        print(json.dumps(row), flush=True)
    spread = {k: {"mean": float(np.mean([r[k] for r in rows])), "min": float(np.min([r[k] for r in rows])),
                  "max": float(np.max([r[k] for r in rows])), "std": float(np.std([r[k] for r in rows], ddof=1))
                  if len(rows) > 1 else 0.0}
              for k in ("sink_nontrigger", "sink_trigger", "value_out_ratio", "backcopy_loss", "bigram_loss")}
    print(json.dumps({"seeds": args.seeds, "spread": spread}))


if __name__ == "__main__":
    main()
