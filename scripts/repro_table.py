"""Markdown rows of the reproducibility table from sweep directories (``lmlab sweep ... --out runs/repro/STUDY``).

One row per claim: passes over the seeds that ran, mean, min-max and per-seed measured values, the paper's
value, and whether the claim holds (passes on at least the sweep's ``holds_share`` of its seeds; with 3 seeds
and the default 0.8 that is 3 of 3). Every number is read from ``sweep-summary.json``:

    PYTHONPATH=src python scripts/repro_table.py runs/repro/*/
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _num(x):
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if v == v else None


def _f(v) -> str:
    return "-" if v is None else f"{v:.4g}"


def rows(sweep_dir: Path) -> list[str]:
    s = json.loads((sweep_dir / "sweep-summary.json").read_text())
    out = []
    for p in s["points"]:
        for cid, a in p["claims"].items():
            nums = [_num(m) for m in a["measured"]]
            per_seed = ", ".join(f"{seed}: {_f(v) if v is not None else json.dumps(m)[:30]} ({st})"
                                 for seed, m, v, st in zip(a["seeds"], a["measured"], nums, a["statuses"]))
            finite = [v for v in nums if v is not None]
            rng = f"{_f(min(finite))} - {_f(max(finite))}" if finite else "-"
            n = a["n_runs"] + a.get("n_errors", 0)
            if s.get("n_pending"):
                verdict = f"incomplete: {s.get('n_done', 0)} of {s.get('n_trials', 0)} trials done"
            elif a["pass_rate"] is None:
                verdict = "not comparable"
            else:
                verdict = "holds" if a["holds"] else ("not established" if a["n_pass"] else "fails")
            out.append(f"| {s['study']} | `{cid}` | {a['n_pass']}/{n} (nc {a['n_not_comparable']}) | "
                       f"{_f(_num(a['measured_mean']))} | {rng} | {per_seed} | {_f(_num(a['paper_value'])) if _num(a['paper_value']) is not None else a['paper_value']} | {verdict} |")
        for e in p.get("errors", []):
            out.append(f"| {s['study']} | trial {e['trial']} (seed {e['seed']}) failed | | | | {e['error'][:80]} | | |")
    return out


if __name__ == "__main__":
    print("| study | claim | passes | mean | min - max | per seed (status) | paper | over seeds |")
    print("|---|---|---|---|---|---|---|---|")
    for d in sys.argv[1:]:
        if (Path(d) / "sweep-summary.json").is_file():
            print("\n".join(rows(Path(d))))
