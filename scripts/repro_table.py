"""Markdown rows of the reproducibility table from sweep directories (``lmlab sweep ... --out runs/repro/STUDY``).

One row per claim: passes over the seeds that ran, each seed's status, mean [min - max] and per-seed measured
values (for a dict-valued measurement, its first numbers, named), the paper's value, and whether the claim holds (passes on at least the sweep's ``holds_share`` of its seeds; with 3 seeds
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


def _values(a: dict, n_leaves: int) -> tuple[str, str]:
    """(mean [min - max], per-seed values) of a claim: its scalar, or the first numbers of a dict measurement."""
    from lmlab.claims import leaf_aggregates, numeric_leaves

    nums = [_num(m) for m in a["measured"]]
    if all(v is not None for v in nums) and nums:
        return (f"{_f(sum(nums) / len(nums))} [{_f(min(nums))} - {_f(max(nums))}]",
                ", ".join(_f(v) for v in nums))
    leaves = leaf_aggregates(a["measured"])
    if not leaves:
        return "-", "-"
    keys = list(leaves)[:n_leaves]
    mean = "; ".join(f"{k} {_f(leaves[k]['mean'])} [{_f(leaves[k]['min'])} - {_f(leaves[k]['max'])}]" for k in keys)
    per = "; ".join(f"{k} " + ", ".join(_f(numeric_leaves(m).get(k)) for m in a["measured"]) for k in keys)
    return mean, per


def rows(sweep_dir: Path, n_leaves: int = 2) -> list[str]:
    s = json.loads((sweep_dir / "sweep-summary.json").read_text())
    out = []
    for p in s["points"]:
        for cid, a in p["claims"].items():
            mean, per = _values(a, n_leaves)
            marks = " ".join({"pass": "P", "fail": "F", "not_comparable": "nc"}.get(st, st) for st in a["statuses"])
            seeds = ", ".join(str(x) for x in a["seeds"])
            n = a["n_runs"] + a.get("n_errors", 0)
            if s.get("n_pending"):
                verdict = f"incomplete: {s.get('n_done', 0)} of {s.get('n_trials', 0)} trials done"
            elif a["pass_rate"] is None:
                verdict = "not comparable"
            else:
                verdict = "holds" if a["holds"] else ("not established" if a["n_pass"] else "fails")
            paper = a["paper_value"]
            paper = _f(_num(paper)) if _num(paper) is not None else json.dumps(paper)[:60]
            out.append(f"| {s['study']} | `{cid}` | {a['n_pass']}/{n} | {seeds}: {marks} | {mean} | {per} | {paper} "
                       f"| {verdict} |")
        for e in p.get("errors", []):
            out.append(f"| {s['study']} | trial {e['trial']} (seed {e['seed']}) failed | | | | {e['error'][:80]} | | |")
    return out


if __name__ == "__main__":
    print("| study | claim | passes | seeds: status | mean [min - max] | per seed | paper | over seeds |")
    print("|---|---|---|---|---|---|---|---|")
    for d in sys.argv[1:]:
        if (Path(d) / "sweep-summary.json").is_file():
            print("\n".join(rows(Path(d))))
