"""Meta-Rewarding's judge preference pairs (Wu et al. 2024, arXiv 2407.19594, section 2.2).

For each prompt: take the response whose N rubric judgments have the highest score variance, let the model as
meta-judge compare every ordered pair of those judgments (both positions), fit position-bias-weighted Elo scores
to the verdicts, and pair the best judgment (chosen) with the worst (rejected), dropping the pair when the chosen
judgment is too long. The pair's prompt is the judge prompt of that response, so DPO trains the judging; the
pairs go into the same DPO dataset as the actor pairs (TRL shuffles it, so batches mix both kinds).

Meta-judge verdicts are appended per prompt to ``meta.jsonl`` in the iteration's directory (resumable).
"""

from __future__ import annotations

import itertools
import json
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lmlab.io import atomic_write_text
from lmlab.selfimprove.generation import engine_of, generate_rows, row_seeds
from lmlab.selfimprove.prompts import JUDGE_TEMPLATE, META_JUDGE_TEMPLATE, parse_winner
from lmlab.selfimprove.sampling import _read_rows
from lmlab.selfimprove.scoring import most_disputed, weighted_elo


def battle_prompts(lm: Any, instruction: str, response: str,
                   judgments: Sequence[str]) -> tuple[list[tuple[int, int]], list[str]]:
    """Every ordered pair (m, n), m != n, of the judgments and its meta-judge prompt (judgment m in position A)."""
    order = list(itertools.permutations(range(len(judgments)), 2))
    return order, [lm.chat_prompt(META_JUDGE_TEMPLATE.format(instruction=instruction, response=response,
                                                             judgment_a=judgments[m], judgment_b=judgments[n]))
                   for m, n in order]


def meta_battles(lm: Any, instruction: str, response: str, judgments: Sequence[str], max_new_tokens: int = 96,
                 temperature: float = 0.0, seed: int = 0) -> list[tuple[int, int, int | None]]:
    """The meta-judge on every ordered pair (m, n), m != n: ``(m, n, r)`` with r = 1 (first position wins),
    -1 (second wins), None (unparsed)."""
    order, prompts = battle_prompts(lm, instruction, response, judgments)
    texts = lm.generate(prompts, max_new_tokens=max_new_tokens, temperature=temperature, seed=seed) if prompts else []
    return [(m, n, parse_winner(t)) for (m, n), t in zip(order, texts)]


def _append(path: Path, done: dict[str, dict[str, Any]], rec: dict[str, Any]) -> None:
    done[rec["id"]] = rec
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps(rec, ensure_ascii=False) + "\n")


def tqdm_(it: Any, desc: str) -> Any:
    from tqdm import tqdm

    return tqdm(it, desc=desc, unit="prompt", leave=False)


def judge_pairs(lm: Any, items: Sequence[Any], samples: dict[str, list[str]], scored: dict[str, dict[str, Any]],
                parsed: dict[str, list[tuple[int, str, str]]], run: Path, max_chosen_chars: int = 1100,
                max_new_tokens: int = 96, weighted: bool = True, seed: int = 0, resume: bool = True,
                progress: bool = False) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Judge pairs for every prompt with a disputed response; stats on the meta-judge (parse rate, how often
    the first position and the higher-scoring judgment win)."""
    path = run / "meta.jsonl"
    done: dict[str, dict[str, Any]] = {}
    if path.exists() and resume:
        rows = _read_rows(path)
        done = {r["id"]: r for r in rows}
        atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    todo = [it for it in items if it.id in scored and "judgments" in scored[it.id] and it.id not in done]
    jobs = []  # (item, picked response, its judgments' texts, the response text, seed)
    for it in todo:
        row = scored[it.id]
        per_resp = row["judgments"]  # per well-formed response: [[text, score|None], ...]
        pick = most_disputed([[np.nan if s is None else s for _, s in js] for js in per_resp])
        if pick is None:
            _append(path, done, {"id": it.id, "response": None})
            continue
        texts = [t for t, _ in per_resp[pick]]
        resp = dict((k, r) for k, _, r in parsed[it.id])[row["index"][pick]]
        jobs.append((it, pick, texts, resp, (seed * 7919 + zlib.crc32(it.id.encode())) % (2**31 - 1)))
    if engine_of(lm) is None:  # one lm.generate call per prompt
        for it, pick, texts, resp, s in (tqdm_(jobs, "meta-judging") if progress else jobs):
            b = meta_battles(lm, it.instruction, resp, texts, max_new_tokens, seed=s)
            _append(path, done, {"id": it.id, "response": pick, "battles": [[m, n, r] for m, n, r in b]})
    else:  # every prompt's battles decoded together; a prompt's row is appended when its battles are all in
        rows, owner, seeds, orders = [], [], [], []
        for j, (it, pick, texts, resp, s) in enumerate(jobs):
            order, prompts = battle_prompts(lm, it.instruction, resp, texts)
            orders.append(order)
            if not prompts:
                _append(path, done, {"id": it.id, "response": pick, "battles": []})
            rows += prompts
            owner += [j] * len(prompts)
            seeds += row_seeds(s, len(prompts))
        got: dict[int, dict[int, str]] = {}
        bar_ = tqdm_(range(len(jobs)), "meta-judging") if progress else None

        def finished(r: int, text: str) -> None:
            j = owner[r]
            got.setdefault(j, {})[r] = text
            if len(got[j]) == len(orders[j]):
                it, pick = jobs[j][0], jobs[j][1]
                verdicts = [got[j][k] for k in sorted(got[j])]
                _append(path, done, {"id": it.id, "response": pick,
                                     "battles": [[m, n, parse_winner(t)] for (m, n), t in zip(orders[j], verdicts)]})
                if bar_ is not None:
                    bar_.update()

        generate_rows(lm, rows, max_new_tokens, 0.0, seeds=seeds, on_done=finished)
        if bar_ is not None:
            bar_.close()
    pairs: list[dict[str, Any]] = []
    stats = {"prompts_disputed": 0, "battles": 0, "parsed": 0, "first_wins": 0, "higher_score_wins": 0,
             "decisive": 0, "too_long": 0, "no_winner": 0}
    for it in items:
        rec = done.get(it.id)
        if not rec or rec.get("response") is None:
            continue
        stats["prompts_disputed"] += 1
        row = scored[it.id]
        js = row["judgments"][rec["response"]]
        battles = [(m, n, r) for m, n, r in rec["battles"]]
        stats["battles"] += len(battles)
        ok = [(m, n, r) for m, n, r in battles if r is not None]
        stats["parsed"] += len(ok)
        for m, n, r in ok:
            stats["decisive"] += 1
            stats["first_wins"] += r == 1
            sm, sn = js[m][1], js[n][1]
            if sm is not None and sn is not None and sm != sn:
                stats["higher_score_wins"] += (r == 1) == (sm > sn)
        if not ok:
            stats["no_winner"] += 1
            continue
        eps = weighted_elo([(m, n, r) for m, n, r in ok], len(js), weighted=weighted)
        c, r_ = int(np.argmax(eps)), int(np.argmin(eps))
        if c == r_ or np.isclose(eps[c], eps[r_]):
            stats["no_winner"] += 1
            continue
        if max_chosen_chars and len(js[c][0]) > max_chosen_chars:
            stats["too_long"] += 1
            continue
        resp = dict((k, rr) for k, _, rr in parsed[it.id])[row["index"][rec["response"]]]
        pairs.append({"id": it.id, "kind": "judge",
                      "prompt": lm.chat_prompt(JUDGE_TEMPLATE.format(instruction=it.instruction, response=resp)),
                      "chosen": js[c][0], "rejected": js[r_][0], "chosen_elo": float(eps[c]), "rejected_elo": float(eps[r_])})
    d = max(1, stats["decisive"])
    stats.update(pairs=len(pairs), meta_parse_rate=stats["parsed"] / max(1, stats["battles"]),
                 first_position_rate=stats["first_wins"] / d)
    return pairs, stats
