"""Do two versions of lmlab give the same numbers? Run every study at a small size, then compare.

    # run each study at its smoke size (quick config + small overrides) into DIR/STUDY
    python scripts/compare_summaries.py run --out runs/compare-new [--studies two-hop muli]
    # compare two such directories claim by claim and metric by metric
    python scripts/compare_summaries.py diff runs/compare-old runs/compare-new

``run`` only calls the ``lmlab`` command line, so it works on any version (check out the old commit in a
``git worktree`` and run this script with ``--lmlab`` pointing at that tree's ``src``). The overrides come
from ``scripts/smoke_overrides.json`` (``--overrides`` for another file, e.g. the old config keys).

``diff`` compares claims by id (measured value and status) and the ``metrics`` tree; wall-clock times,
throughputs and provenance are skipped, since they differ between any two runs. Numbers compare equal
within a relative 1e-9 (JSON round trip). Exit code 1 when anything differs.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
#: metric keys that measure time or speed, not results
TIMING = re.compile(r"(second|time|_s$|throughput|per_s|latency|wall|rate_hz|load_avg|tokens_per|elapsed|timings)",
                    re.I)
REL_TOL = 1e-9


def _close(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        if math.isnan(a) and math.isnan(b):
            return True
        return math.isclose(a, b, rel_tol=REL_TOL, abs_tol=1e-12)
    return a == b


def diff_tree(a: Any, b: Any, path: str = "") -> list[str]:
    """Paths where two JSON trees differ (timing keys skipped)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            if TIMING.search(str(k)):
                continue
            p = f"{path}.{k}" if path else str(k)
            if k not in a or k not in b:
                out.append(f"{p}: only in {'new' if k not in a else 'old'}")
            else:
                out += diff_tree(a[k], b[k], p)
        return out
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{path}: length {len(a)} != {len(b)}"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in diff_tree(x, y, f"{path}[{i}]")]
    return [] if _close(a, b) else [f"{path}: {json.dumps(a)[:80]} != {json.dumps(b)[:80]}"]


def compare(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    oc = {c["id"]: c for c in old["claims"]}
    nc = {c["id"]: c for c in new["claims"]}
    diffs: list[str] = []
    for cid in sorted(set(oc) | set(nc)):
        if cid not in oc or cid not in nc:
            diffs.append(f"claim {cid}: only in {'new' if cid not in oc else 'old'}")
            continue
        if oc[cid]["status"] != nc[cid]["status"]:
            diffs.append(f"claim {cid}: status {oc[cid]['status']} -> {nc[cid]['status']}")
        diffs += [f"claim {cid}: {d}" for d in diff_tree(oc[cid]["measured"], nc[cid]["measured"], "measured")]
    diffs += [f"metrics.{d}" for d in diff_tree(old.get("metrics", {}), new.get("metrics", {}))]
    same_claims = sum(1 for cid in set(oc) & set(nc) if not any(d.startswith(f"claim {cid}:") for d in diffs))
    return {"claims_old": len(oc), "claims_new": len(nc), "claims_identical": same_claims, "differences": diffs}


def cmd_diff(args: argparse.Namespace) -> int:
    old_dir, new_dir = Path(args.old), Path(args.new)
    report: dict[str, Any] = {}
    for p in sorted(new_dir.glob("*/summary.json")):
        study = p.parent.name
        q = old_dir / study / "summary.json"
        if not q.exists():
            report[study] = {"error": f"no {q}"}
            continue
        report[study] = compare(json.loads(q.read_text()), json.loads(p.read_text()))
    for p in sorted(old_dir.glob("*/summary.json")):
        report.setdefault(p.parent.name, {"error": f"no {new_dir / p.parent.name / 'summary.json'}"})
    bad = 0
    for study, r in report.items():
        if "error" in r:
            print(f"{study:16s} MISSING  {r['error']}")
            bad += 1
            continue
        n = len(r["differences"])
        bad += n > 0
        print(f"{study:16s} {'same' if n == 0 else 'DIFFERS':8s} claims identical {r['claims_identical']}/"
              f"{r['claims_new']} (old {r['claims_old']}), {n} difference(s)")
        for d in r["differences"][: args.show]:
            print(f"    {d}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 1 if bad else 0


def cmd_run(args: argparse.Namespace) -> int:
    overrides = json.loads(Path(args.overrides).read_text())
    studies = args.studies or [s for s in overrides if not s.startswith("_")]
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    if args.lmlab:
        env["PYTHONPATH"] = str(Path(args.lmlab).resolve())
    if args.cache:
        env["LMLAB_CACHE"] = str(Path(args.cache).resolve())
    failed = 0
    for study in studies:
        spec = overrides[study]
        cmd = [sys.executable, "-m", "lmlab.cli", "run", study, "--quick", "--fresh", "--no-progress",
               "--threads", "1", "--out", str(Path(args.out) / study)] + [a for s in spec for a in ("--set", s)]
        t0 = time.perf_counter()
        r = subprocess.run(cmd, env=env, capture_output=True, text=True)
        print(f"{study:16s} rc={r.returncode} {time.perf_counter() - t0:6.1f} s  {r.stdout.splitlines()[0] if r.stdout else ''}",
              flush=True)
        if r.returncode:
            failed += 1
            print(r.stderr[-2000:], flush=True)
    return 1 if failed else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run every study at its smoke size")
    r.add_argument("--out", required=True)
    r.add_argument("--studies", nargs="*")
    r.add_argument("--overrides", default=str(HERE / "smoke_overrides.json"))
    r.add_argument("--lmlab", help="a tree's src/ to import lmlab from (default: the installed one)")
    r.add_argument("--cache", help="LMLAB_CACHE for these runs (default: the user's)")
    d = sub.add_parser("diff", help="compare two run directories")
    d.add_argument("old")
    d.add_argument("new")
    d.add_argument("--show", type=int, default=8, help="differences printed per study")
    d.add_argument("--json", help="also write the full comparison here")
    args = ap.parse_args()
    return cmd_run(args) if args.cmd == "run" else cmd_diff(args)


if __name__ == "__main__":
    sys.exit(main())
