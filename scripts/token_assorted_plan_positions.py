"""Token-assorted diagnostic: how much of the plan a text-trace model gets right given the solver's true trace
(teacher forced), position by position. Loads checkpoints written by the study (``RUN/trace/checkpoint.pt``) or by
``scripts/token_assorted_plan_order.py`` (``OUT/ORDER/checkpoint.pt``) for the quick config's 5x5 mazes.

    PYTHONPATH=src python scripts/token_assorted_plan_positions.py start=runs/ta-quick/trace/checkpoint.pt \
        goal=runs/ta-plan-order/goal/checkpoint.pt

Each argument is PLAN_ORDER=CHECKPOINT. Prints, per plan position k (0: the first plan cell, the start or the goal),
the share of the first 100 held-out mazes where the argmax is the true token; the last position is EOS.
The context length is rebuilt as the study builds it (5,000 training mazes and ``--n-eval`` held-out ones), so the
learned position table matches the checkpoint's.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from lmlab.nn import TinyTransformer
from lmlab.studies.token_assorted import TokenAssortedStudy, build_data, pad_batch, sequence
from lmlab.tasks.maze import PLAN, MazeTask


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("runs", nargs="+", help="PLAN_ORDER=CHECKPOINT")
    ap.add_argument("--n-eval", type=int, default=100, help="held-out mazes the run was built with (sets n_ctx)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    base = TokenAssortedStudy().quick_config()
    for run in args.runs:
        order, ck = run.split("=", 1)
        task = MazeTask(base.task.replace(plan_order=order), seed=0)
        ev = build_data(task, task.eval_mazes(max(args.n_eval, 64)))
        tr = build_data(task, task.mazes(0, base.n_train))
        n_ctx = max(1 + len(p) + len(t) + len(q) for d in (tr, ev)
                    for p, t, q in zip(d.prompts, d.traces, d.plans)) + 8
        V = len(task.vocab)
        model = TinyTransformer(base.model.replace(d_vocab=V, n_ctx=n_ctx))
        model.load_state_dict(torch.load(ck, weights_only=False)["model"])
        model.eval()
        n = min(100, len(ev.mazes))
        b = pad_batch([sequence(ev, i, "trace", 0, 1, V) for i in range(n)], task.prompt_len)
        with torch.no_grad():
            pred = model(b.tokens).argmax(-1)
        acc: dict[int, list[int]] = {}
        for r in range(n):
            at = int((b.tokens[r] == PLAN).nonzero()[0].item())
            for k in range(len(ev.mazes[r].path) + 1):  # the plan's cells, then EOS
                acc.setdefault(k, []).append(int(pred[r, at + k] == b.targets[r, at + k]))
        print(json.dumps({"order": order, "checkpoint": ck, "n": n,
                          "all_positions": round(float(np.mean([x for v in acc.values() for x in v])), 3),
                          "by_position": {k: [round(float(np.mean(v)), 2), len(v)] for k, v in sorted(acc.items())}}))


if __name__ == "__main__":
    main()
