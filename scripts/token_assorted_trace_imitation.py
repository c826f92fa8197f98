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
from lmlab.tasks.maze import CLOSE, EOS, PAD, PLAN, TRACE, MazeTask


def first_divergence(gen: list[int], true: list[int]) -> int | None:
    """Index of the first token where ``gen`` differs from ``true`` (a shorter ``gen`` differs at its end); None if
    equal."""
    for i, t in enumerate(true):
        if i >= len(gen) or gen[i] != t:
            return i
    return None if len(gen) == len(true) else len(true)


def expansions(tokens: list[int]) -> list[tuple[int, int]]:
    """The (closed cell, parent) token pairs of a (possibly malformed) trace, in order, up to PLAN: the search's
    order with the costs left out."""
    out = []
    for i, t in enumerate(tokens):
        if t == PLAN:
            break
        if t == CLOSE and i + 4 < len(tokens):
            out.append((tokens[i + 1], tokens[i + 4]))
    return out


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
    div_kind, div_at, closes_ok, first_close, order_ok = Counter(), [], [], 0, []
    for i, g in enumerate(greedy):
        true = [TRACE] + ev.traces[i] + ev.plans[i]
        true_kinds = task.token_kinds(true)
        first_close += int(g[:7] == true[:7])  # TRACE have_0 close cell g h parent
        ge, te = expansions(g), expansions(true)
        order_ok.append(next((j for j, (a, b_) in enumerate(zip(ge, te)) if a != b_), min(len(ge), len(te))))
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
                                                         "solver_mean": float(np.mean(n_closes))},
           # costs left out: how many expansions (closed cell, parent) follow the solver's order before the first
           # difference, and the share of mazes where the whole order is the solver's
           "greedy_search_order_right": {"mean": float(np.mean(order_ok)),
                                         "whole": float(np.mean([k == c for k, c in zip(order_ok, n_closes)]))}}
    for k in ("feasible", "feasible_se", "greedy_solve_rate", "greedy_trace_exact", "greedy_trace_implies_valid_plan",
              "mean_trace_len", "train_seconds", "seconds_per_step", "n_params"):
        if k in row:
            res[k] = row[k]
    return res


def markdown(results: list[dict]) -> str:
    """One column per run: the numbers docs/studies/token-assorted.md reports."""
    def cell(r: dict, key: str) -> str:
        tf = r["teacher_forced_by_kind"]
        if key in tf:
            return f"{tf[key]['acc']:.2f}"
        if key == "first close_h":
            return f"{r['teacher_forced_h_error']['first close_h']['acc']:.2f}"
        if key == "create_h off by 2+":
            return f"{r['teacher_forced_h_error']['create_h']['off_by_2_or_more']:.2f}"
        if key == "divergence":
            return ", ".join(f"{k} {v}" for k, v in list(r["greedy_first_divergence_kind"].items())[:3])
        if key == "expansions right":
            e = r["greedy_expansions_right_before_divergence"]
            return f"{e['mean']:.2f} of {e['solver_mean']:.1f}"
        if key == "order":
            o = r.get("greedy_search_order_right")
            return f"{o['mean']:.2f}; {o['whole']:.2f}" if o else ""
        if key == "feasible":
            return f"{r['feasible']:.2f} ± {r['feasible_se']:.2f}" if "feasible" in r else ""
        v = r.get(key, "")
        return f"{v:.3f}" if isinstance(v, float) else str(v)

    rows = [("steps", "steps"), ("parameters", "n_params"), ("seconds per step", "seconds_per_step"),
            ("held-out loss per token", "held_out_loss"),
            ("teacher forced acc: `close` keyword (next event)", "close"), ("... closed cell (A* choice)", "close_cell"),
            ("... closed g", "close_g"), ("... closed h", "close_h"), ("... first expansion's h (start to goal)", "first close_h"),
            ("... parent", "parent"), ("... `create` keyword", "create"), ("... created cell (neighbours)", "create_cell"),
            ("... created g", "create_g"), ("... created h", "create_h"),
            ("... created h wrong by 2 or more (share)", "create_h off by 2+"), ("... `have` (keys)", "have"),
            ("... plan cells", "plan_cell"),
            ("greedy first expansion right (`have_0 close cell g h parent`)", "greedy_first_close_right"),
            ("greedy first divergence (kind of the solver's token: count)", "divergence"),
            ("greedy expansions right before it (mean, of the solver's)", "expansions right"),
            ("greedy expansions in the solver's order, costs ignored (mean; share whole)", "order"),
            ("greedy trace exact", "greedy_trace_exact"),
            ("greedy trace implies a valid plan", "greedy_trace_implies_valid_plan"),
            ("1-Feasible-10 (± SE)", "feasible")]
    out = ["| | " + " | ".join(f"`{r['arm']}`" for r in results) + " |",
           "|---|" + "---|" * len(results)]
    out += ["| " + name + " | " + " | ".join(cell(r, key) for r in results) + " |" for name, key in rows]
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("runs", nargs="+", help="OUT/ARM folders with checkpoint.pt")
    ap.add_argument("--order", default="goal", help="plan order of a run without a plan_order.jsonl row")
    ap.add_argument("--n-eval", type=int, default=100, help="held-out mazes the run was built with (sets n_ctx)")
    ap.add_argument("--n", type=int, default=None, help="analyse only the first N of them")
    ap.add_argument("--json", default=None, help="also write the results here")
    ap.add_argument("--from-json", nargs="*", default=None, help="print the markdown table of these results files")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.from_json is not None:
        print(markdown([r for f in [*args.runs, *args.from_json] for r in json.loads(Path(f).read_text())]))
        return
    out = [analyse(Path(r), args.order, args.n_eval, args.n) for r in args.runs]
    for r in out:
        print(json.dumps(r), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
