"""Token-assorted diagnostic: where does a text-trace model stop imitating the solver's A* trace? For checkpoints
written by ``scripts/token_assorted_plan_order.py`` (``OUT/ARM/checkpoint.pt``, the quick config's 5x5 mazes):

- teacher forced on the first ``--n-eval`` held-out mazes: loss and argmax accuracy per token kind
  (``MazeTask.token_kinds``: the next-event keyword ``close``/``create``/``PLAN``, ``have``, the closed cell, its g, h
  and parent, the created cell, its g and h, the plan cells, EOS);
- greedy (from ``OUT/ARM/eval_rows.json`` when the run wrote it, else generated here): whether the first expansion
  (``have_0 close cell g h parent``) is the solver's, where the greedy continuation first leaves the solver's trace
  (token index, the kind of the solver's token there, the number of expansions written correctly before it), and
  the run's verdicts (greedy trace exact, greedy trace implies a valid plan, 1-Feasible-10 from plan_order.jsonl).

    PYTHONPATH=src python scripts/token_assorted_trace_imitation.py OUT/ARM [OUT/ARM2 ...] [--json OUT/imitation.json]

An ARM folder without a row in ``OUT/plan_order.jsonl`` is read as the quick model (2 layers, d64) with the plan
order given by ``--order`` (e.g. the 2026-12-01 20:45 session's ``goal`` run).
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from lmlab.nn import TinyTransformer
from lmlab.studies.token_assorted import TokenAssortedStudy, build_data, pad_batch, sequence
from lmlab.tasks.maze import EOS, PAD, TRACE, MazeTask


def first_divergence(gen: list[int], true: list[int]) -> int | None:
    """Index of the first token where ``gen`` differs from ``true`` (a shorter ``gen`` differs at its end); None if
    equal."""
    for i, t in enumerate(true):
        if i >= len(gen) or gen[i] != t:
            return i
    return None if len(gen) == len(true) else len(true)


def analyse(run: Path, order: str, n_eval: int, n_max: int | None = None) -> dict:
    rows = [json.loads(x) for x in (run.parent / "plan_order.jsonl").read_text().splitlines()] \
        if (run.parent / "plan_order.jsonl").exists() else []
    row = next((r for r in rows if r.get("arm", r["order"]) == run.name), {})
    order = row.get("order", order)
    base = TokenAssortedStudy().quick_config()
    task = MazeTask(base.task.replace(plan_order=order), seed=0)
    n_eval = row.get("n_eval", n_eval)
    ev = build_data(task, task.eval_mazes(max(n_eval, 64)))  # as the run built it (sets n_ctx)
    tr = build_data(task, task.mazes(0, row.get("n_train", base.n_train)))
    n_ctx = max(1 + len(p) + len(t) + len(q) for d in (tr, ev) for p, t, q in zip(d.prompts, d.traces, d.plans)) + 8
    V = len(task.vocab)
    size = row.get("model", {})
    model = TinyTransformer(base.model.replace(d_vocab=V, n_ctx=n_ctx, **size))
    model.load_state_dict(torch.load(run / "checkpoint.pt", weights_only=False)["model"])
    model.eval()
    n = min(n_max or n_eval, n_eval)
    P = task.prompt_len

    # teacher forced, per token kind
    b = pad_batch([sequence(ev, i, "trace", 0, 1, V) for i in range(n)], P)
    with torch.no_grad():
        logits = model(b.tokens)
    ce = torch.nn.functional.cross_entropy(logits.transpose(1, 2), b.targets, reduction="none")
    right = logits.argmax(-1) == b.targets
    per: dict[str, list[tuple[float, int]]] = {}
    tf_first_error = Counter()
    pred = logits.argmax(-1)
    h_err: dict[str, list[int]] = {"first close_h": [], "close_h": [], "create_h": []}  # |predicted - true| in cost steps
    for r in range(n):
        cont = b.targets[r, P - 1:][b.mask[r, P - 1:]].tolist()  # TRACE trace PLAN path EOS
        kinds = task.token_kinds(cont)
        first = None
        for j, k in enumerate(kinds):
            per.setdefault(k, []).append((float(ce[r, P - 1 + j]), int(right[r, P - 1 + j])))
            if first is None and not right[r, P - 1 + j]:
                first = k
            if k in ("close_h", "create_h"):
                p_tok, t_tok = int(pred[r, P - 1 + j]), cont[j]
                e = abs(p_tok - t_tok) if task.vocab.is_cost(p_tok) else 99  # 99: not a cost token at all
                h_err[k].append(e)
                if k == "close_h" and len(h_err["first close_h"]) < r + 1:
                    h_err["first close_h"].append(e)
        tf_first_error[first or "none"] += 1
    by_kind = {k: {"n": len(v), "loss": round(float(np.mean([x[0] for x in v])), 3),
                   "acc": round(float(np.mean([x[1] for x in v])), 3)} for k, v in sorted(per.items())}
    loss = float(ce[b.mask].mean())

    # greedy, against the solver's trace
    er = run / "eval_rows.json"
    if er.exists():
        greedy = [x["tokens"] for x in json.loads(er.read_text())][:n]
    else:
        with torch.no_grad():
            out = model.generate(torch.from_numpy(ev.prompts[:n]), n_ctx, eos=EOS, pad=PAD)
        greedy = []
        for g in out[:, P:].tolist():
            g = g[: g.index(EOS) + 1] if EOS in g else g
            greedy.append([t for t in g if t != PAD])
    div_kind, div_at, closes_ok, first_close = Counter(), [], [], 0
    for i, g in enumerate(greedy):
        true = [TRACE] + ev.traces[i] + ev.plans[i]
        true_kinds = task.token_kinds(true)
        first_close += int(g[:7] == true[:7])  # TRACE have_0 close cell g h parent
        d = first_divergence(g, true)
        if d is None:
            div_kind["none"] += 1
            closes_ok.append(true_kinds.count("close"))
            continue
        div_kind[true_kinds[d] if d < len(true) else "past the end"] += 1
        div_at.append(d)
        # whole expansions written right before the divergence (a close counts once its parent pointer is right)
        closes_ok.append(sum(1 for j, k in enumerate(true_kinds[:d]) if k == "parent"))
    n_closes = [sum(1 for e in m.trace if e[0] == "close") for m in ev.mazes[:n]]
    res = {"arm": run.name, "order": order, "n": n, "steps": row.get("steps"), "model": size or "quick (2L d64)",
           "held_out_loss": round(loss, 4), "teacher_forced_by_kind": by_kind,
           "teacher_forced_first_error_kind": dict(tf_first_error.most_common()),
           "teacher_forced_h_error": {k: {"acc": round(float(np.mean([e == 0 for e in v])), 3),
                                          "off_by_1": round(float(np.mean([e == 1 for e in v])), 3),
                                          "off_by_2_or_more": round(float(np.mean([e >= 2 for e in v])), 3)}
                                      for k, v in h_err.items()},
           "greedy_first_close_right": first_close / n,
           "greedy_first_divergence_kind": dict(div_kind.most_common()),
           "greedy_first_divergence_token": {"mean": float(np.mean(div_at)) if div_at else None,
                                             "median": float(np.median(div_at)) if div_at else None},
           "greedy_expansions_right_before_divergence": {"mean": float(np.mean(closes_ok)),
                                                         "solver_mean": float(np.mean(n_closes))}}
    for k in ("feasible", "feasible_se", "greedy_solve_rate", "greedy_trace_exact", "greedy_trace_implies_valid_plan",
              "mean_trace_len", "train_seconds", "seconds_per_step", "n_params"):
        if k in row:
            res[k] = row[k]
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("runs", nargs="+", help="OUT/ARM folders with checkpoint.pt")
    ap.add_argument("--order", default="goal", help="plan order of a run without a plan_order.jsonl row")
    ap.add_argument("--n-eval", type=int, default=100, help="held-out mazes the run was built with (sets n_ctx)")
    ap.add_argument("--n", type=int, default=None, help="analyse only the first N of them")
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args()
    torch.set_num_threads(1)
    out = [analyse(Path(r), args.order, args.n_eval, args.n) for r in args.runs]
    for r in out:
        print(json.dumps(r), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
