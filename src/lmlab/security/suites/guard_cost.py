"""The price of a rejection-sampling guardrail: generations and latency per accepted output.

A rejection-sampling guard draws a reply, checks it, and draws again while the check rejects (up to
``max_tries``). Its cost depends on the rejection rate r: the number of generations per accepted output is
geometric with mean 1 / (1 - r) when tries are unlimited. To measure the cost at *set* rates, the guard
here is a stand-in whose verdict is a keyed hash of the reply text (``rejects``): content-dependent and
deterministic, with rejection probability exactly r for distinct replies. Generation and its latency are
real (the target samples at temperature > 0); the n-th draw of a prompt is shared across rates, so a run
costs max-over-rates generations, not the sum.

``success(attempt, reply)`` is True when the guard accepts the reply at the attempt's rate.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from lmlab.security.base import Attempt, Suite, check_n

VERSION = "guard-cost/1"
TOPICS = ("the sea", "autumn", "a bicycle", "coffee", "a library", "the moon", "a market", "rain", "a train",
          "bread", "a garden", "winter", "a river", "music", "a bridge", "tea")
PROMPTS = ("Write one sentence about {t}.", "Describe {t} in one short sentence.", "Give me a short fact about {t}.")


def rejects(text: str, r: float, salt: str = "") -> bool:
    """The stand-in guard: rejects when a keyed hash of the text, as a number in [0, 1), is below ``r``."""
    h = int.from_bytes(hashlib.sha256(f"{salt}|{text}".encode()).digest()[:8], "big") / 2**64
    return h < r


class GuardCostSuite(Suite):
    name = "guard-cost"
    version = VERSION
    kind = "cost"
    families: ClassVar[tuple[str, ...]] = ("rejection-sampling",)

    def generate(self, n: int, seed: int = 0) -> list[Attempt]:
        check_n(n, "guard-cost: n")
        rng = random.Random(f"{VERSION}:{seed}")
        return [Attempt(self.name, VERSION, i, "rejection-sampling", user=rng.choice(PROMPTS).format(t=rng.choice(TOPICS)),
                        meta={"salt": f"{seed}:{i}"}) for i in range(n)]

    def success(self, attempt: Attempt, output: Any) -> bool:
        """``output`` is ``(reply, r)``: the guard accepts the reply at rejection rate r."""
        text, r = output
        return not rejects(str(text), float(r), attempt.meta.get("salt", ""))


def evaluate(attempts: Sequence[Attempt], target: Any, rates: Sequence[float], max_tries: int = 8,
             max_new_tokens: int = 24, temperature: float = 0.8, seed: int = 0) -> tuple[dict[str, Any], list[dict]]:
    """Per rate: accepted share, generations and latency per accepted output (mean over prompts, with a bootstrap
    interval), against the unlimited-tries expectation 1 / (1 - r); plus one record per generation."""
    suite = GuardCostSuite()
    n = len(attempts)
    draws: list[list[tuple[str, float]]] = [[] for _ in range(n)]
    records: list[dict[str, Any]] = []

    def need(i: int) -> bool:  # does any rate still want another draw for prompt i?
        for r in rates:
            texts = [t for t, _ in draws[i]]
            accepted = any(suite.success(attempts[i], (t, r)) for t in texts)
            if not accepted and len(texts) < max_tries:
                return True
        return False

    for k in range(max_tries):
        todo = [i for i in range(n) if need(i)]
        if not todo:
            break
        replies = target.chat([("", attempts[i].user) for i in todo], max_new_tokens=max_new_tokens,
                              temperature=temperature, seed=seed + 1000 * k)
        for i, rep in zip(todo, replies):
            draws[i].append((rep.text, rep.latency_s))
            records.append({"id": attempts[i].id, "suite": suite.name, "version": VERSION, "draw": k,
                            "output": rep.text, "latency_s": round(rep.latency_s, 4)})
    out: dict[str, Any] = {"max_tries": max_tries, "rates": {}}
    rng = np.random.default_rng(seed)
    for r in rates:
        gens, lat, acc = [], [], []
        for i in range(n):
            g, t_s, ok = 0, 0.0, False
            for text, dt in draws[i]:
                g += 1
                t_s += dt
                if suite.success(attempts[i], (text, r)):
                    ok = True
                    break
            gens.append(g)
            lat.append(t_s)
            acc.append(ok)
        gens_a, lat_a, acc_a = np.asarray(gens, float), np.asarray(lat, float), np.asarray(acc, bool)
        n_acc = int(acc_a.sum())
        per_acc_g = gens_a.sum() / n_acc if n_acc else float("inf")
        per_acc_t = lat_a.sum() / n_acc if n_acc else float("inf")
        boots = []
        for _ in range(1000):
            ix = rng.integers(0, n, n)
            a = acc_a[ix].sum()
            boots.append(gens_a[ix].sum() / a if a else np.inf)
        out["rates"][f"{r:g}"] = {"rejection_rate": r, "accepted": int(n_acc), "n": n,
                                  "generations_per_accepted": per_acc_g,
                                  "generations_per_accepted_ci95": [float(np.percentile(boots, 2.5)),
                                                                    float(np.percentile(boots, 97.5))],
                                  "extra_generations_per_accepted": per_acc_g - 1,
                                  "latency_s_per_accepted": per_acc_t,
                                  # E[draws] / P(accepted) = 1 / (1 - r), with or without the cap on tries
                                  "expected": 1 / (1 - r) if r < 1 else None}
    base = out["rates"].get(f"{rates[0]:g}", {})
    for v in out["rates"].values():
        v["latency_ratio_vs_first"] = (v["latency_s_per_accepted"] / base["latency_s_per_accepted"]
                                       if base.get("latency_s_per_accepted") else None)
    return out, records
