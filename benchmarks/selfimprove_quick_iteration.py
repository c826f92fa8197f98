"""Wall time of one real ``--quick`` self-improvement iteration on this machine's cores (issue 22's goal: sampling +
judging + DPO under 10 minutes on CPU).

Runs ``lmlab run tpo --quick`` with only the direct arm (the arm whose pairs reach DPO: the thought arm's samples
mostly do not parse at 135M, so it would time sampling alone), ``--threads T``, into a fresh directory, and reads the
iteration's own stage clock (``done.json``'s ``seconds``: sampling, judging, DPO including the validation decode of
its snapshots) plus the held-out evaluations around it and the whole run's wall time, CPU time and peak memory
(``getrusage`` of the child). Not a projection from part-runs, as ``selfimprove_speed.py`` gives: the real loop.
Run it with nothing else on the machine::

    python benchmarks/selfimprove_quick_iteration.py --threads 2 --out benchmarks/results/selfimprove_quick_iteration.json

The 10-minute goal is the iteration (sampling + judging + DPO); the seed and post-iteration evaluations on 100
held-out problems are reported beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--study", default="tpo")
    ap.add_argument("--set", dest="overrides", action="append", default=None,
                    help="extra --set for the run (default: arms=[\"none\"] for tpo)")
    ap.add_argument("--goal-minutes", type=float, default=10.0)
    ap.add_argument("--keep", default=None, help="run directory to keep (default: a temporary one, removed)")
    ap.add_argument("--out", default="benchmarks/results/selfimprove_quick_iteration.json")
    a = ap.parse_args()
    overrides = a.overrides if a.overrides is not None else (['arms=["none"]'] if a.study == "tpo" else [])
    tmp = None if a.keep else tempfile.TemporaryDirectory(prefix="lmlab-quick-iter-")
    run_dir = Path(a.keep or tmp.name) / "run"
    cmd = [sys.executable, "-m", "lmlab", "run", a.study, "--quick", "--threads", str(a.threads), "--no-progress",
           "--out", str(run_dir)] + [x for o in overrides for x in ("--set", o)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        print(proc.stderr[-3000:], file=sys.stderr)
        print(f"error: the run failed (exit {proc.returncode}); nothing written", file=sys.stderr)
        return 1
    iters = []
    for done in sorted(run_dir.rglob("done.json")):
        d = json.loads(done.read_text())
        secs = d.get("seconds", {})
        n_samples = sum(1 for _ in open(done.parent / "samples.jsonl")) if (done.parent / "samples.jsonl").exists() else None
        dpo = json.loads((done.parent / "dpo.json").read_text()) if (done.parent / "dpo.json").exists() else {}
        iters.append({"dir": str(done.parent.relative_to(run_dir)), "seconds": secs,
                      "iteration_s": round(sum(secs.values()), 1),
                      "samples": n_samples,
                      "samples_per_s": round(n_samples / secs["sampling"], 3) if n_samples and secs.get("sampling") else None,
                      "dpo_train_s": dpo.get("seconds"),
                      "dpo_steps_per_s": round(dpo["steps"] / dpo["seconds"], 4) if dpo.get("seconds") else None,
                      "pairs": (d.get("pairs") or {}).get("n_pairs", (d.get("pairs") or {}).get("pairs")),
                      "dpo_steps": (d.get("dpo") or {}).get("steps"), "dpo_skipped": d.get("dpo_skipped")})
    summary = json.loads((run_dir / "summary.json").read_text())
    stages = summary.get("stages", {})
    res = {
        "benchmark": "selfimprove_quick_iteration",
        "study": a.study, "overrides": overrides, "threads": a.threads, "cores": os.cpu_count(),
        "command": " ".join(cmd[1:]).replace(str(run_dir), "RUN"),
        "git_commit": (summary.get("provenance") or {}).get("git_commit", "")[:7],
        "load_before": [round(x, 2) for x in load_before], "load_after": [round(x, 2) for x in os.getloadavg()],
        "run_wall_s": round(wall, 1), "run_cpu_s": round(ru.ru_utime + ru.ru_stime, 1),
        "peak_rss_gb": round(ru.ru_maxrss / 1024 ** 2, 2),
        "iterations": iters,
        "stages": {k: {kk: v.get(kk) for kk in ("computed", "reason") if kk in v} if isinstance(v, dict) else v
                   for k, v in stages.items()},
        "goal": f"one --quick iteration (sampling + judging + DPO) under {a.goal_minutes:g} minutes",
    }
    if iters:
        worst = max(it["iteration_s"] for it in iters)
        res["iteration_minutes"] = round(worst / 60, 2)
        res["goal_met"] = worst / 60 < a.goal_minutes
    res["outside_iteration_s"] = round(wall - sum(it["iteration_s"] for it in iters), 1)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
