"""``lmlab redteam``: run attack suites against one target and write every attempt, a table and a figure.

======================  =====================================================================================
suite                   against a chat target (the embedded model, a local model, or one OpenAI-compatible URL)
======================  =====================================================================================
``injection``           indirect prompt injection, matched inert-canary controls, per harness defence
``leakage``             system-prompt canary extraction, benign-question controls, per harness defence
``jailbreak``           transformed harmful requests vs the same requests untransformed; success = the endpoint
                        answers instead of refusing (HTTP 4xx): what a transform adds to a guard's miss rate
``guard-cost``          generations and latency per accepted output of a rejection-sampling guard
``cache-poison``        a local semantic cache (``--embedder``): cross-tenant with namespacing off / on, same
                        tenant; sends nothing to the target
======================  =====================================================================================

Output directory: ``attempts-<suite>.jsonl`` (every attempt: request, output, success), ``summary.json``,
``table.md`` (attack success with exact 95% intervals, echo rate, net rate, clean-task success) and
``attack-success.png`` (success rate per attack family x defence). Nothing is sent anywhere but ``target``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lmlab.config import ConfigError


def redteam(target: str, suites: Sequence[str], out: str | Path, defences: Sequence[str] = ("none",), n: int = 20,
            seed: int = 0, api_key: str | None = None, max_new_tokens: int = 48, embedder: str = "hashing",
            thresholds: Sequence[float] = (0.7, 0.8, 0.85, 0.9, 0.95), rejection_rates: Sequence[float] = (0.0, 0.5),
            progress: bool = True, gateway_model: str = "default", guard_detector: str = "",
            cache_threshold: float = 0.9) -> dict[str, Any]:
    from lmlab.io import atomic_write_json, atomic_write_text
    from lmlab.security import SUITES
    from lmlab.security.defences import make_defence
    from lmlab.security.harness import format_table, heatmap, run_chat, summarise, table_rows, write_jsonl
    from lmlab.security.targets import make_target

    SUITES.check(suites, "--suite")
    if target == "gateway":
        return _gateway(suites, out, defences, n, seed, max_new_tokens, gateway_model, guard_detector, embedder,
                        cache_threshold, progress)
    defs = [make_defence(d, seed=seed) for d in defences]  # fails on a bad name before any request is sent
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    chat_suites = [s for s in suites if s in ("injection", "leakage", "jailbreak", "guard-cost")]
    tgt = make_target(target, api_key=api_key) if chat_suites else None
    summary: dict[str, Any] = {"target": getattr(tgt, "name", target), "target_is_local": getattr(tgt, "local", True),
                               "n": n, "seed": seed, "defences": [d.name for d in defs], "suites": {}}
    chat_summaries: dict[str, Any] = {}
    rows: list[dict[str, Any]] = []
    for name in suites:
        suite = SUITES.get(name)()
        if name in ("injection", "leakage", "jailbreak"):
            attempts = suite.chat_attempts(n, seed) if name == "jailbreak" else suite.generate(n, seed)
            records: list[dict[str, Any]] = []
            it: Any = defs
            if progress:
                from tqdm import tqdm

                it = tqdm(defs, desc=name, unit="defence", leave=False)
            for d in it:
                records += run_chat(suite, attempts, tgt, d, max_new_tokens=max_new_tokens)  # type: ignore[arg-type]
            write_jsonl(records, out / f"attempts-{name}.jsonl")
            s = summarise(records, seed=seed)
            summary["suites"][name] = {"version": suite.version, "summary": s}
            chat_summaries[name] = s
            rows += table_rows(name, s)
        elif name == "guard-cost":
            from lmlab.security.suites.guard_cost import evaluate

            res, records = evaluate(suite.generate(n, seed), tgt, rejection_rates, seed=seed,
                                    max_new_tokens=min(24, max_new_tokens))
            write_jsonl(records, out / "attempts-guard-cost.jsonl")
            summary["suites"][name] = {"version": suite.version, **res}
        elif name == "cache-poison":
            from lmlab.security.suites.cache_poison import evaluate as cache_eval

            res, records = cache_eval(suite.generate(n, seed), _embedder(embedder, seed), thresholds, store=out,
                                      seed=seed)
            write_jsonl(records, out / "attempts-cache-poison.jsonl")
            summary["suites"][name] = {"version": suite.version, "embedder": embedder, "scenarios": res}
    table = format_table(rows) if rows else ""
    for name, v in summary["suites"].items():
        if name == "cache-poison":
            table += "\n\n| scenario | threshold | poisoned answer served | 95% CI |\n|---|---|---|---|\n" + "\n".join(
                f"| {sc} | {t} | {r['all']['k']}/{r['all']['n']} | [{r['all']['ci95'][0]:.3f}, {r['all']['ci95'][1]:.3f}] |"
                for sc, per in v["scenarios"].items() for t, r in per.items())
        if name == "guard-cost":
            table += "\n\n| rejection rate | generations per accepted | latency per accepted (s) | expected |\n|---|---|---|---|\n" + "\n".join(
                f"| {r['rejection_rate']:g} | {r['generations_per_accepted']:.2f} | {r['latency_s_per_accepted']:.2f} "
                f"| {r['expected']:.2f} |" for r in v["rates"].values())
    atomic_write_text(out / "table.md", table.strip() + "\n")
    if chat_summaries:
        summary["figure"] = heatmap(chat_summaries, out, "attack-success.png")
    atomic_write_json(out / "summary.json", json.loads(json.dumps(summary, default=str)))
    return summary


def _gateway(suites: Sequence[str], out: str | Path, variants: Sequence[str], n: int, seed: int, max_new_tokens: int,
             model: str, guard_detector: str, embedder: str, cache_threshold: float, progress: bool) -> dict[str, Any]:
    """``--target gateway``: ``lmlab serve`` subprocesses on 127.0.0.1, one per variant (``--defence`` names a
    variant: plain, guard, spotlight, injection-block, shared-tenant), a local backend ``model``."""
    from lmlab.io import atomic_write_json, atomic_write_text
    from lmlab.security.gateway import VARIANTS, run_matrix
    from lmlab.security.harness import format_table, heatmap, table_rows

    variants = ["plain"] if list(variants) == ["none"] else list(variants)
    for v in variants:
        if v not in VARIANTS:
            raise ConfigError(f"--defence {v!r}: with --target gateway, name gateway variants: {', '.join(VARIANTS)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if "guard" in variants and not guard_detector:
        guard_detector = str(train_guard(out / "guard-tfidf.npz", seed))
    backend = {"name": "target", "kind": "fake"} if model == "fake" else {"name": "target", "kind": "local", "model": model}
    res = run_matrix(variants, suites, out, backend, n=n, seed=seed, max_new_tokens=max_new_tokens,
                     guard_detector=guard_detector, cache_embedder=embedder if embedder != "random" else "hashing",
                     cache_threshold=cache_threshold, progress=progress)
    rows = [r for s, v in res["suites"].items() if s != "cache-poison" for r in table_rows(s, v)]
    table = format_table(rows) if rows else ""
    if "cache-poison" in res["suites"]:
        table += "\n\n| variant | poisoned answer served | planted in the attacker's answer |\n|---|---|---|\n" + "\n".join(
            f"| {v} | {r['all']['k']}/{r['all']['n']} | {r['planted']['k']}/{r['planted']['n']} |"
            for v, r in res["suites"]["cache-poison"].items())
    atomic_write_text(out / "table.md", table.strip() + "\n")
    chat = {s: v for s, v in res["suites"].items() if s != "cache-poison"}
    summary = {"target": "gateway", "target_is_local": True, "n": n, "seed": seed, **res}
    if chat:
        summary["figure"] = heatmap(chat, out, "attack-success.png")
    atomic_write_json(out / "summary.json", json.loads(json.dumps(summary, default=str)))
    return summary


def train_guard(path: Path, seed: int = 0) -> Path:
    """A TF-IDF + logistic-regression toxicity detector fitted on the bundled moderation set, saved for the
    gateway's guard (``guard.detector = path``); cheap to build, unlike the default MULI guard."""
    from lmlab.moderation.data import load_default
    from lmlab.moderation.tfidf import TfidfDetector

    data = load_default()
    TfidfDetector(seed=seed).fit(data.texts, data.labels).save(path)
    return path


def _embedder(name: str, seed: int) -> Any:
    from lmlab.cache import HashingEmbedder, RandomEmbedder

    if name == "hashing":
        return HashingEmbedder(dim=256, seed=seed)
    if name == "random":
        return RandomEmbedder(seed=seed)
    if name == "minilm":
        from lmlab.cache import load_st_embedder

        return load_st_embedder()
    if Path(name).exists():
        from lmlab.cache import load_st_embedder

        return load_st_embedder(name)
    raise ConfigError(f"--embedder {name!r}: use hashing, minilm, random or a sentence-transformers directory")
