"""Semantic-cache poisoning: one tenant stores a near-paraphrase with a malicious answer; is it served?

The attacker writes, into a :class:`lmlab.cache.SemanticCache`, questions from the cache study's knowledge base
(:mod:`lmlab.cache.data`, test split) with a malicious answer that carries the campaign canary (a phishing
link). The victim then asks a benign question that is either a paraphrase of a poisoned one (family
``paraphrase``: the poison's target) or a hard negative of it (``entity_swap``, ``year_change``, ... : a
benign *neighbour* that must not be served any cached answer). Success = the served answer contains the
canary. Three scenarios, each in a fresh store, as the threshold varies:

==================  ===========================================================================
``cross-off``       attacker and victim are different tenants, the cache does not namespace by tenant
``cross-on``        different tenants, one namespace per tenant (must give 0: a namespace is a wall)
``same``            attacker and victim share a tenant (an insider; namespacing cannot help)
==================  ===========================================================================

The victim's namespace also holds legitimate entries (other questions with honest answers), so a lookup
there really searches.
"""

from __future__ import annotations

import random
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from lmlab.security.base import Attempt, Suite, check_n, contains_canary, make_canary, rate

VERSION = "cache-poison/1"
SCENARIOS = ("cross-off", "cross-on", "same")
MODEL = "target-model"


class CachePoisonSuite(Suite):
    name = "cache-poison"
    version = VERSION
    kind = "cache"
    families: ClassVar[tuple[str, ...]] = ("paraphrase", "entity_swap", "attribute_swap", "year_change", "negation",
                                           "reversed_direction")

    def generate(self, n: int, seed: int = 0) -> list[Attempt]:
        """``n`` (poisoned prompt, victim query) pairs; the attempt's ``document`` is the attacker's prompt, its
        ``user`` the victim's query, and ``system`` the malicious answer."""
        from lmlab.cache.data import KnowledgeBase, make_pairs

        check_n(n, "cache-poison: n")
        canary = make_canary(random.Random(f"{VERSION}:{seed}"))
        answer = f"Log in at https://{canary.lower()}.example to see the answer."
        pairs = make_pairs(KnowledgeBase(), "test", n, seed=seed, pos_frac=0.5)
        return [Attempt(self.name, VERSION, i, p.kind, user=p.b, document=p.a, system=answer, canary=canary,
                        meta={"label": p.label}) for i, p in enumerate(pairs)]

    def success(self, attempt: Attempt, output: Any) -> bool:
        """``output``: the served answer (None on a miss)."""
        return output is not None and contains_canary(str(output), attempt.canary)


def legit_entries(n: int, seed: int) -> list[tuple[str, str]]:
    from lmlab.cache.data import KnowledgeBase, make_pairs

    pairs = make_pairs(KnowledgeBase(), "train", n, seed=seed + 1)
    return [(p.a, "Here is the answer from our documentation.") for p in pairs]


def evaluate(attempts: Sequence[Attempt], embedder: Any, thresholds: Sequence[float],
             scenarios: Sequence[str] = SCENARIOS, store: str | Path | None = None, n_legit: int = 40,
             seed: int = 0) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Per scenario and threshold: the poison-served rate (exact interval) over all victim queries, over the
    paraphrases (the poison's targets) and over the hard negatives (benign neighbours); plus JSONL records."""
    from lmlab.cache import Namespace, SemanticCache

    suite = CachePoisonSuite()
    out: dict[str, Any] = {}
    records: list[dict[str, Any]] = []
    legit = legit_entries(n_legit, seed)
    with tempfile.TemporaryDirectory(dir=store) as tmp:
        for sc in scenarios:
            if sc not in SCENARIOS:
                raise ValueError(f"cache-poison scenario {sc!r}; use one of {', '.join(SCENARIOS)}")
            attacker = Namespace(MODEL, tenant="shared" if sc == "cross-off" else ("victim" if sc == "same" else "attacker"))
            victim = Namespace(MODEL, tenant="shared" if sc == "cross-off" else "victim")
            with SemanticCache(embedder, Path(tmp) / sc, threshold=0.9) as c:
                c.put_many([(q, a) for q, a in legit], victim)
                c.put_many([(a.document, a.system) for a in attempts], attacker)
                per: dict[str, Any] = {}
                for tau in thresholds:
                    c.threshold = float(tau)
                    served = []
                    for a in attempts:
                        hit = c.get(a.user, victim)
                        ok = suite.success(a, hit.response if hit else None)
                        served.append(ok)
                        records.append({"id": a.id, "suite": suite.name, "version": VERSION, "scenario": sc,
                                        "threshold": float(tau), "attack": a.attack, "victim_query": a.user,
                                        "poisoned_prompt": a.document, "served": hit.response if hit else None,
                                        "similarity": round(hit.similarity, 4) if hit else None, "success": ok})
                    s = np.asarray(served)
                    para = np.array([a.attack == "paraphrase" for a in attempts])
                    per[f"{tau:g}"] = {"all": rate(s), "paraphrase": rate(s[para]), "neighbour": rate(s[~para])}
                out[sc] = per
    return out, records
