"""Routing benchmark (issue 10): one routing decision over 100 candidate models, and EmbedLLM training time
on a 112 x 36,054 synthetic correctness matrix (the size of the paper's), as JSON.

    python benchmarks/routing_latency.py                 # latency + 300 training steps, extrapolated
    python benchmarks/routing_latency.py --train-epochs 50   # the full 50-epoch training (hours on 2 cores)

Latency is measured after the question embedding (the features are given): ``Router.choose(features,
candidates)`` one question at a time, and ``Router.route`` for a batch. The training time is measured on
``--train-steps`` Adam steps at the reference defaults (batch 2,048, d 232, 768-d question embeddings as
all-mpnet-base-v2 gives) and extrapolated to one epoch and to 50, or measured whole with ``--train-epochs``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import numpy as np
import torch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--candidates", type=int, default=100)
    ap.add_argument("--text-dim", type=int, default=768)
    ap.add_argument("--decisions", type=int, default=5000)
    ap.add_argument("--train-models", type=int, default=112)
    ap.add_argument("--train-questions", type=int, default=36_054)
    ap.add_argument("--train-steps", type=int, default=300)
    ap.add_argument("--train-epochs", type=int, default=0, help="train whole epochs instead of --train-steps")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from threadpoolctl import threadpool_limits

    threadpool_limits(args.threads)  # numpy's BLAS too: its default thread per core thrashes on a shared machine

    from lmlab.routing.data import split_questions
    from lmlab.routing.embedllm import EmbedLLMConfig, EmbedLLMRouter
    from lmlab.routing.synthetic import synthetic_matrix

    out: dict = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch_threads": args.threads,
                             "load_average_1min": os.getloadavg()[0], "torch": torch.__version__}}

    # -- latency: 100 candidates ---------------------------------------------------------------------
    m, x = synthetic_matrix(args.candidates, 2000, feature_dim=args.text_dim, seed=0)
    tr, _, te = split_questions(m.n_questions, seed=0)
    router = EmbedLLMRouter(EmbedLLMConfig(progress=False, max_steps=20)).fit(m, tr, x)
    q = x[te]
    cands = m.model_names
    for i in range(50):
        router.choose(q[i % len(q)], cands)
    lat = []
    for i in range(args.decisions):
        t = time.perf_counter()
        router.choose(q[i % len(q)], cands)
        lat.append(time.perf_counter() - t)
    lat_us = sorted(v * 1e6 for v in lat)
    batch_times = []
    for _ in range(21):
        t = time.perf_counter()
        router.route(q)
        batch_times.append(time.perf_counter() - t)
    batch_s = statistics.median(batch_times)
    out["latency"] = {
        "candidates": args.candidates, "text_dim": args.text_dim, "decisions": args.decisions,
        "median_us": round(statistics.median(lat_us), 1), "p90_us": round(lat_us[int(0.9 * len(lat_us))], 1),
        "p99_us": round(lat_us[int(0.99 * len(lat_us))], 1),
        "decisions_per_second_one_at_a_time": round(len(lat) / sum(lat), 1),
        "batched_route_per_second": round(len(q) / batch_s, 1), "batched_questions": len(q),
        "target": "well under 1 ms (1000 us) after the question embedding",
    }

    # -- training time on a 112 x 36,054 matrix ----------------------------------------------------------
    t = time.perf_counter()
    m, x = synthetic_matrix(args.train_models, args.train_questions, feature_dim=args.text_dim, seed=1)
    tr, _, _ = split_questions(m.n_questions, seed=42)
    gen_s = time.perf_counter() - t
    entries = int(m.n_models * len(tr))
    cfg = EmbedLLMConfig(progress=False, epochs=args.train_epochs or 1,
                         max_steps=None if args.train_epochs else args.train_steps)
    t = time.perf_counter()
    r = EmbedLLMRouter(cfg).fit(m, tr, x)
    train_s = time.perf_counter() - t
    steps_per_epoch = -(-entries // cfg.batch_size)
    per_step = train_s / r.steps
    out["training"] = {
        "matrix": [m.n_models, m.n_questions], "train_entries": entries, "text_dim": args.text_dim,
        "config": cfg.to_dict(), "steps_run": r.steps, "seconds": round(train_s, 1),
        "seconds_per_step": round(per_step, 4), "steps_per_epoch": steps_per_epoch,
        "seconds_per_epoch": round(per_step * steps_per_epoch, 1) if not args.train_epochs else round(train_s / args.train_epochs, 1),
        "seconds_50_epochs": round(per_step * steps_per_epoch * 50, 1),
        "measured_or_extrapolated": "measured" if args.train_epochs else f"extrapolated from {r.steps} steps",
        "matrix_generation_seconds": round(gen_s, 1),
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
