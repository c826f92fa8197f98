"""Sample K outputs per prompt, batched, resumable per prompt.

Prompts are cut into fixed chunks of ``chunk`` prompts (by position in the full list), each with a seed that
depends only on ``(seed, chunk index)``. With the engine (:mod:`lmlab.lm.engine`, Llama-family HF models) every
row goes through continuous batching at once (:mod:`lmlab.selfimprove.generation`), row j of chunk c sampled with
its own seed from ``(chunk seed, j)``; otherwise a chunk's K * chunk rows are one ``lm.generate`` call with the
chunk's seed. Each finished prompt is appended to a JSONL file at once; a resumed run keeps the finished prompts
and samples the others with the same seeds, so an interrupted run ends with exactly the rows of an uninterrupted
one.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lmlab.io import atomic_write_text
from lmlab.selfimprove.generation import engine_of, generate_rows, row_seeds


def chunk_seed(seed: int, chunk: int) -> int:
    return int(np.random.default_rng([seed, 104729, chunk]).integers(2**31 - 1))


def _read_rows(path: Path) -> list[dict[str, Any]]:
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut short by an interruption: sampled again
            continue
    return rows


def sample_k(lm: Any, ids: Sequence[str], prompts: Sequence[str], K: int, path: str | Path | None = None,
             temperature: float = 0.8, top_p: float = 0.95, max_new_tokens: int = 128, seed: int = 0,
             chunk: int = 4, resume: bool = True, progress: bool = False,
             stop_after: int | None = None) -> dict[str, list[str]]:
    """K samples per prompt: ``{id: [text] * K}`` (raw text, stripped). ``prompts`` are full model inputs
    (chat template applied). ``stop_after``: stop after that many newly sampled chunks (tests of resume)."""
    if K < 1:
        raise ValueError(f"K must be >= 1, got {K}")
    if len(ids) != len(prompts) or len(set(ids)) != len(ids):
        raise ValueError("sample_k: ids must be unique and as many as the prompts")
    done: dict[str, list[str]] = {}
    path = Path(path) if path is not None else None
    if path is not None and path.exists() and resume:
        want = dict(zip(ids, prompts))
        keep = [r for r in _read_rows(path) if want.get(r.get("id")) == r.get("prompt") and len(r.get("samples", [])) == K]
        done = {r["id"]: r["samples"] for r in keep}
        atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in keep))
    elif path is not None and path.exists():
        path.unlink()
    chunks = [list(range(i, min(i + chunk, len(ids)))) for i in range(0, len(ids), chunk)]
    todo = [(c, idx) for c, idx in enumerate(chunks) if any(ids[i] not in done for i in idx)]
    if stop_after is not None:
        todo = todo[:stop_after]

    def record(i: int, samples: list[str]) -> None:
        done[ids[i]] = samples
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a", encoding="utf-8") as f:
                f.write(json.dumps({"id": ids[i], "prompt": prompts[i], "samples": samples}, ensure_ascii=False) + "\n")

    bar: Any = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=sum(len(idx) for _, idx in todo), desc=f"sampling K={K}", unit="prompt", leave=False)
    if engine_of(lm) is None:  # one lm.generate call per chunk, seeded per chunk
        for c, idx in todo:
            rows = [prompts[i] for i in idx for _ in range(K)]
            texts = lm.generate(rows, max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
                                seed=chunk_seed(seed, c))
            for j, i in enumerate(idx):
                if ids[i] not in done:
                    record(i, [t.strip() for t in texts[j * K:(j + 1) * K]])
                    if bar is not None:
                        bar.update()
    else:  # every row at once through continuous batching, row j of chunk c seeded by (chunk_seed(seed, c), j)
        owner, rows, seeds = [], [], []
        for c, idx in todo:
            cs = row_seeds(chunk_seed(seed, c), len(idx) * K)
            for j, i in enumerate(idx):
                if ids[i] in done:
                    continue
                owner += [i] * K
                rows += [prompts[i]] * K
                seeds += cs[j * K:(j + 1) * K]
        got: dict[int, dict[int, str]] = {}

        def finished(r: int, text: str) -> None:
            i = owner[r]
            got.setdefault(i, {})[r] = text.strip()
            if len(got[i]) == K:
                record(i, [got[i][k] for k in sorted(got[i])])
                if bar is not None:
                    bar.update()

        generate_rows(lm, rows, max_new_tokens, temperature, top_p, seeds=seeds, on_done=finished)
    if bar is not None:
        bar.close()
    return {i: done[i] for i in ids if i in done}
