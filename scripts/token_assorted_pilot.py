"""Pilot for the token-assorted study: which maze setting needs search? Trains the answer-only (Sol-Only) model of
the study's quick config on mazes of growing size and key count and reports its 1-Feasible-10 on held-out mazes.

    PYTHONPATH=src python scripts/token_assorted_pilot.py --out runs/ta-pilot 5:1 6:1 7:1 7:2 8:2
    (each argument is size:n_keys[:wall_density]; add --steps N to change the training length)

Writes one JSON row per setting to OUT/pilot.jsonl as each finishes (a rerun skips the settings already there).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from lmlab.studies.token_assorted import TokenAssortedStudy, build_data, evaluate_arm, pad_batch, sequence
from lmlab.nn import TinyTransformer
from lmlab.tasks.maze import MazeTask
from lmlab.train import Batch, train


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("settings", nargs="+")
    ap.add_argument("--out", default="runs/ta-pilot")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--n-train", type=int, default=None)
    ap.add_argument("--n-eval", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = out / "pilot.jsonl"
    done = {json.loads(line)["setting"] for line in log.read_text().splitlines()} if log.exists() else set()
    base = TokenAssortedStudy().quick_config()
    for s in args.settings:
        if s in done:
            continue
        parts = s.split(":")
        task_cfg = base.task.replace(size=int(parts[0]), n_keys=int(parts[1]),
                                     **({"wall_density": float(parts[2])} if len(parts) > 2 else {}))
        task = MazeTask(task_cfg, seed=args.seed)
        n_train = args.n_train or base.n_train
        t0 = time.time()
        tr = build_data(task, task.mazes(0, n_train))
        ev = build_data(task, task.eval_mazes(args.n_eval))
        n_ctx = max(len(p) + len(q) for d in (tr, ev) for p, q in zip(d.prompts, d.plans)) + 8
        torch.manual_seed(args.seed)
        model = TinyTransformer(base.model.replace(d_vocab=len(task.vocab), n_ctx=n_ctx))
        tcfg = base.train.replace(progress=False, **({"steps": args.steps} if args.steps else {}))

        def batch_fn(step: int) -> Batch:
            rng = np.random.default_rng(np.random.SeedSequence([args.seed, 1, step]))
            idx = rng.integers(0, n_train, size=base.batch_size)
            return pad_batch([sequence(tr, int(i), "answer", 0, 1, 0) for i in idx], task.prompt_len)

        res = train(model, tcfg.seeded(args.seed), batch_fn, out / s.replace(":", "_"))
        r = evaluate_arm(model, task, ev, n_ctx, base.eval_batch_size, len(task.vocab), seed=args.seed, progress=False)
        row = {"setting": s, "size": task_cfg.size, "n_keys": task_cfg.n_keys, "wall_density": task_cfg.wall_density,
               "steps": tcfg.steps, "n_train": n_train, "n_eval": args.n_eval,
               "answer_feasible10": r["feasible"], "answer_feasible10_se": r["feasible_se"],
               "answer_optimal10": r["optimal"], "answer_greedy": r["greedy_solve_rate"],
               "solver_trace_tokens": float(np.mean([len(t) for t in ev.traces])),
               "solver_trace_p90": float(np.quantile([len(t) for t in ev.traces], 0.9)),
               "path_len": float(np.mean([len(m.path) for m in ev.mazes])),
               "final_loss": res.evals[-1].get("loss") if res.evals else None, "seconds": round(time.time() - t0, 1)}
        print(json.dumps(row), flush=True)
        with log.open("a") as f:
            f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
