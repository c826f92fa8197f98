"""``lmlab route fit``: a correctness matrix for the gateway's backends, from a bundled verifiable question set.

The questions come from the prompt-cache study's knowledge base (:mod:`lmlab.cache.data`): for each of its 60
countries, its capital, its currency and its main language (180 questions, real public facts). Every backend
answers every question through the gateway's own backend code (temperature 0, ``max_tokens`` small); an answer
is correct when it contains the expected word (case-insensitive; for a currency, its name). The matrix is saved
with :func:`lmlab.routing.data.save_matrix` (models named like the backends, question text included), which is
what ``router.matrix`` reads to fit the EmbedLLM router.

This is a small, easy question set: it tells apart a model that knows world facts from one that does not, not
the fine-grained strengths the EmbedLLM paper routes on. Any other matrix with question text works the same way.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from pathlib import Path
from typing import Any

import numpy as np

from lmlab.config import ConfigError
from lmlab.serve.config import GatewayConfig

log = logging.getLogger("lmlab.serve")

QUESTIONS_VERSION = "serve-route-questions/1"
TEMPLATES = {
    "capital": "What is the capital of {c}? Answer with the city name only.",
    "currency": "What is the currency of {c}? Answer with the currency name only.",
    "language": "What is the main language spoken in {c}? Answer with the language name only.",
}


def verifiable_questions() -> list[tuple[str, str, str]]:
    """(question, expected answer word, benchmark) for every country and attribute of the bundled knowledge base."""
    from lmlab.cache.data import COUNTRIES

    out = []
    for c, cap, cur, lang in COUNTRIES:
        for attr, ans in (("capital", cap), ("currency", cur), ("language", lang)):
            out.append((TEMPLATES[attr].format(c=c), ans, attr))
    return out


def is_correct(answer: str, expected: str) -> bool:
    norm = lambda s: re.sub(r"[^a-z0-9 ]", " ", s.lower())  # noqa: E731
    return f" {norm(expected).strip()} " in f" {' '.join(norm(answer).split())} "


async def _answers(backend: Any, questions: list[str], max_tokens: int, concurrency: int) -> list[str]:
    from lmlab.serve.backends import GenRequest
    from lmlab.serve.errors import GatewayError

    sem = asyncio.Semaphore(concurrency)

    async def one(q: str) -> str:
        async with sem:
            req = GenRequest(messages=[{"role": "user", "content": q}], max_tokens=max_tokens, temperature=0.0,
                             messages_original=[{"role": "user", "content": q}])
            for attempt in range(3):
                try:
                    return (await backend.generate(req)).text
                except GatewayError as e:
                    if e.status in (429, 503) and attempt < 2:
                        await asyncio.sleep(1.0)
                        continue
                    log.warning("backend %s failed a question (%s); counted wrong", backend.name, e.message)
                    return ""
            return ""

    return list(await asyncio.gather(*[one(q) for q in questions]))


async def _fit(cfg: GatewayConfig, names: list[str], max_tokens: int, limit: int | None,
               concurrency: int) -> tuple[np.ndarray, list[tuple[str, str, str]], dict[str, float]]:
    from lmlab.serve.backends import make_backend

    qs = verifiable_questions()[: limit or None]
    labels = np.zeros((len(names), len(qs)), dtype=np.int8)
    secs = {}
    for i, name in enumerate(names):
        b = make_backend(cfg.backend(name))  # type: ignore[arg-type]
        await b.start()
        try:
            t0 = time.perf_counter()
            answers = await _answers(b, [q for q, _, _ in qs], max_tokens, concurrency)
            secs[name] = round(time.perf_counter() - t0, 1)
        finally:
            await b.close()
        labels[i] = [is_correct(a, exp) for a, (_, exp, _) in zip(answers, qs)]
        log.info("route fit: %s answered %d of %d correctly in %.1f s", name, int(labels[i].sum()), len(qs), secs[name])
    return labels, qs, secs


def fit_matrix(cfg: GatewayConfig, out: str | Path, backends: list[str] | None = None, max_tokens: int = 16,
               limit: int | None = None, concurrency: int = 8) -> dict[str, Any]:
    """Ask every backend (or those named) the bundled questions, save the correctness matrix at ``out`` (.npz +
    .json) and return a summary (accuracy per backend, seconds)."""
    from lmlab.routing.data import CorrectnessMatrix, save_matrix

    names = backends or [b.name for b in cfg.backends]
    unknown = [n for n in names if cfg.backend(n) is None]
    if unknown:
        raise ConfigError(f"route fit: {unknown[0]!r} is not a backend of the config ({', '.join(b.name for b in cfg.backends)})")
    if len(names) < 2:
        raise ConfigError("route fit: routing needs at least two backends; configure more [[backends]]")
    labels, qs, secs = asyncio.run(_fit(cfg, names, max_tokens, limit, concurrency))
    m = CorrectnessMatrix(labels, names, question_text=[q for q, _, _ in qs], benchmarks=[b for _, _, b in qs],
                          meta={"questions": QUESTIONS_VERSION, "max_tokens": max_tokens})
    path = save_matrix(m, out)
    acc = {n: round(float(labels[i].mean()), 4) for i, n in enumerate(names)}
    return {"matrix": str(path), "n_questions": len(qs), "accuracy": acc, "seconds": secs,
            "oracle_accuracy": round(float(labels.max(0).mean()), 4)}
