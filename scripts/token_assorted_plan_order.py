"""Token-assorted design check: does writing the plan goal first (the order the trace's parent pointers lead) let
the text-trace model read its plan off the trace? Trains the quick config's text-trace (CoT) model once per plan
order, on the same mazes, batches, initialisation and step budget, and reports for each: the plan given the true
trace (teacher forced: loss per token and the share of plans wholly right), and 1-Feasible-10 on held-out mazes.

    PYTHONPATH=src python scripts/token_assorted_plan_order.py --out runs/ta-plan-order --steps 800 start goal
    (--size/--keys change the maze; --n-eval 0 skips the sampling, e.g. to time the training steps alone)

Writes one JSON row per order to OUT/plan_order.jsonl as each finishes (a rerun skips the orders already there).
"""

from __future__ import annotations

import argparse
import copy
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from lmlab.nn import TinyTransformer
from lmlab.studies.token_assorted import (TokenAssortedStudy, build_data, evaluate_arm, model_batch, pad_batch,
                                          sequence, teacher_forced_metrics)
from lmlab.tasks.maze import MazeTask
from lmlab.train import Batch, train


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("orders", nargs="+", choices=["start", "goal"])
    ap.add_argument("--out", default="runs/ta-plan-order")
    ap.add_argument("--steps", type=int, default=800)
    ap.add_argument("--size", type=int, default=None)
    ap.add_argument("--keys", type=int, default=None)
    ap.add_argument("--n-train", type=int, default=None)
    ap.add_argument("--n-eval", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--n-layers", type=int, default=None, help="model size (default: the quick config's)")
    ap.add_argument("--d-model", type=int, default=None)
    ap.add_argument("--n-heads", type=int, default=None)
    ap.add_argument("--tag", default=None, help="name of the arm (output folder and row key; default: the order)")
    ap.add_argument("--budget-seconds", type=float, default=None,
                    help="set the steps from a wall-clock budget: time a 12-step probe on a throwaway copy of the "
                         "model, then steps = budget / seconds per step (overrides --steps)")
    ap.add_argument("--budget-like", default=None,
                    help="as --budget-seconds, with the budget = the training seconds of this arm's row in the log")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = out / "plan_order.jsonl"
    done = ({json.loads(line).get("arm", json.loads(line)["order"]) for line in log.read_text().splitlines()}
            if log.exists() else set())
    base = TokenAssortedStudy().quick_config()
    n_train = args.n_train or base.n_train
    size_kw = {k: v for k, v in (("n_layers", args.n_layers), ("d_model", args.d_model), ("n_heads", args.n_heads))
               if v is not None}
    for order in args.orders:
        arm = args.tag or order
        if arm in done:
            continue
        task_cfg = base.task.replace(plan_order=order, **({"size": args.size} if args.size else {}),
                                     **({"n_keys": args.keys} if args.keys is not None else {}))
        task = MazeTask(task_cfg, seed=args.seed)
        t0 = time.time()
        tr = build_data(task, task.mazes(0, n_train))
        ev = build_data(task, task.eval_mazes(max(args.n_eval, 64)))
        n_ctx = max(1 + len(p) + len(t) + len(q) for d in (tr, ev)
                    for p, t, q in zip(d.prompts, d.traces, d.plans)) + 8
        V = len(task.vocab)
        torch.manual_seed(args.seed)  # the same initialisation for both orders
        model = TinyTransformer(base.model.replace(d_vocab=V, n_ctx=n_ctx, **size_kw))

        def batch_fn(step: int) -> Batch:  # the study's trace-arm batches (stream 2): the same draws for both orders
            return model_batch(tr, "trace", args.seed, 2, step, base.batch_size, base.mix_tokens,
                               base.vqvae.chunk_len, V, task.prompt_len)

        def val(m: TinyTransformer, step: int) -> dict:
            return teacher_forced_metrics(m, pad_batch([sequence(ev, i, "trace", 0, 1, V) for i in range(64)],
                                                       task.prompt_len))

        t_data = time.time() - t0
        steps, probe, budget = args.steps, None, args.budget_seconds
        if args.budget_like:  # the same wall-clock training time as an arm already in the log
            prev = [json.loads(x) for x in log.read_text().splitlines()] if log.exists() else []
            budget = next(r["train_seconds"] for r in prev if r.get("arm", r["order"]) == args.budget_like)
        if budget:  # the probe's model is a copy: the trained model starts from the same init
            # seconds per step = (time of 12 steps - time of 2 steps) / 10, after a discarded 2-step warm-up: the
            # first steps of a process carry one-off costs (allocations, first autograd graph) that made a plain
            # 12-step mean about twice the running rate
            t = {}
            for n_probe in (2, 2, 12):
                with tempfile.TemporaryDirectory() as tmp:
                    t[n_probe] = train(copy.deepcopy(model), base.train.replace(
                        steps=n_probe, progress=False, eval_every=10**9, warmup_steps=1,
                        checkpoint_every=10**9).seeded(args.seed), batch_fn, Path(tmp)).seconds
            probe = (t[12] - t[2]) / 10 if t[12] > t[2] else t[12] / 12
            steps = max(10, int(budget / probe))
            print(f"{arm}: probe {probe:.3f} s/step -> {steps} steps", flush=True)
        tcfg = base.train.replace(steps=steps, progress=False, eval_every=max(1, steps // 4),
                                  warmup_steps=min(base.train.warmup_steps, steps // 2),
                                  checkpoint_every=max(1, steps // 4))
        res = train(model, tcfg.seeded(args.seed), batch_fn, out / arm, eval_fn=val)
        row = {"arm": arm, "order": order, "size": task_cfg.size, "n_keys": task_cfg.n_keys, "steps": steps,
               "model": {k: getattr(model.cfg, k) for k in ("n_layers", "d_model", "n_heads")},
               "n_params": sum(p.numel() for p in model.parameters()), "probe_seconds_per_step": probe,
               "budget_seconds": budget,
               "n_train": n_train, "data_seconds": round(t_data, 1), "train_seconds": round(res.seconds, 1),
               "seconds_per_step": round(res.seconds / steps, 3),
               "mean_seq_tokens": float(np.mean([1 + len(p) + len(t) + len(q)
                                                 for p, t, q in zip(tr.prompts, tr.traces, tr.plans)])),
               "history": [{k: h[k] for k in ("step", "val_loss", "val_plan_loss", "val_plan_exact") if k in h}
                           for h in res.evals]}
        if args.n_eval:
            sub = build_data(task, ev.mazes[:args.n_eval])
            t1 = time.time()
            r = evaluate_arm(model, task, sub, n_ctx, base.eval_batch_size, V, seed=args.seed, progress=False)
            row.update({k: r[k] for k in ("feasible", "feasible_se", "optimal", "greedy_solve_rate",
                                          "greedy_trace_exact", "greedy_trace_implies_valid_plan",
                                          "mean_trace_len", "failure_reasons")},
                       n_eval=args.n_eval, eval_seconds=round(time.time() - t1, 1))
            # per maze (greedy tokens, verdicts), for scripts/token_assorted_trace_imitation.py
            (out / arm / "eval_rows.json").write_text(json.dumps(
                [{k: x[k] for k in ("feasible", "optimal", "greedy_valid", "greedy_trace_exact",
                                    "greedy_trace_implies_valid_plan", "tokens", "sample_reasons")}
                 for x in r["rows"]]) + "\n")
        row["seconds"] = round(time.time() - t0, 1)
        print(json.dumps(row), flush=True)
        with log.open("a") as f:
            f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
