"""Throughput of the PPE metric suite (lmlab.rewardeval.metrics) on synthetic data; prints one JSON object.

- human preference: 100,000 pairs over 20 models and 12 domains, a noisy RM; every metric of
  ``preference_metrics`` (accuracy overall and per domain, Bradley-Terry for RM and humans, 100
  bootstrap fits each, Spearman/Kendall, row-wise Pearson, separability, confidence agreement, Brier)
  and, separately, a 1,000-replicate bootstrap CI of the accuracy;
- best-of-K: 10,000 prompts x 32 responses; ``bok_summary`` (exact best-of-k curve, oracle curve,
  pairwise accuracy, ROC-AUC, row-wise Pearson, the summary values).

Goal (issue 8): 100k pairs in under a second. Median of ``--repeats`` timings after one warm-up.
Run: PYTHONPATH=src python benchmarks/rewardeval_metrics.py [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np


def _time(fn, repeats):
    fn()  # warm-up (imports, caches)
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return float(np.median(ts)), ts


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=100_000)
    ap.add_argument("--models", type=int, default=20)
    ap.add_argument("--rows", type=int, default=10_000)
    ap.add_argument("--K", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="BLAS/torch threads (0: default)")
    args = ap.parse_args()
    if args.threads:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
    from lmlab.rewardeval import metrics as M

    rng = np.random.default_rng(0)
    n, m = args.pairs, args.models
    beta = rng.normal(size=m)
    ia = rng.integers(0, m, n)
    ib = (ia + rng.integers(1, m, n)) % m
    p = 1 / (1 + np.exp(-(beta[ia] - beta[ib])))
    u = rng.random(n)
    label = np.where(u < 0.1, 0, np.where(rng.random(n) < p, 1, -1))
    margin = label + rng.normal(scale=1.5, size=n)
    names = np.array([f"model-{i:02d}" for i in range(m)])
    a, b = names[ia], names[ib]
    domain = np.array([f"d{i}" for i in range(12)])[rng.integers(0, 12, n)]

    pref_s, pref_all = _time(lambda: M.preference_metrics(margin, label, a, b, domain, n_boot=100), args.repeats)
    credit = M.pair_correctness(margin, label)
    ci_s, _ = _time(lambda: M.bootstrap_mean_ci(credit, n_boot=1000), args.repeats)
    res = M.preference_metrics(margin, label, a, b, domain, n_boot=100)

    c = rng.random((args.rows, args.K)) < rng.random((args.rows, 1))
    s = c * 0.5 + rng.normal(size=c.shape)
    bok_s, bok_all = _time(lambda: M.bok_summary(s, c), args.repeats)
    curve_s, _ = _time(lambda: M.best_of_k_curve(s, c), args.repeats)
    summ = M.bok_summary(s, c)

    try:
        load = os.getloadavg()
    except OSError:  # pragma: no cover
        load = None
    print(json.dumps({
        "benchmark": "rewardeval_metrics",
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "load_avg": load,
                    "threads": args.threads or "default"},
        "preference": {"pairs": n, "models": m, "domains": 12, "n_boot": 100,
                       "all_metrics_seconds": round(pref_s, 4), "timings": [round(t, 4) for t in pref_all],
                       "pairs_per_second": round(n / pref_s),
                       "accuracy_bootstrap_1000_seconds": round(ci_s, 4),
                       "goal_under_1s": pref_s < 1.0,
                       "values": {k: round(res[k], 4) for k in ("accuracy", "spearman", "kendall", "rowwise_pearson",
                                                               "separability", "confidence_agreement", "brier")}},
        "best_of_k": {"rows": args.rows, "K": args.K, "bok_summary_seconds": round(bok_s, 4),
                      "timings": [round(t, 4) for t in bok_all], "best_of_k_curve_seconds": round(curve_s, 4),
                      "rows_per_second": round(args.rows / bok_s),
                      "values": {k: round(summ[k], 4) for k in ("base", "end_bok", "max_bok", "improvement",
                                                               "pairwise_accuracy", "roc_auc", "auc_k", "gt_mse")}},
    }, indent=2))


if __name__ == "__main__":
    main()
