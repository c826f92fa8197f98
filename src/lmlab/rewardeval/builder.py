"""A verifiable-correctness ("best-of-K") set builder: exactly checkable problems, K sampled responses
from any :class:`lmlab.lm.LM`, each labelled by a checker, written in the PPE best-of-K schema.

Domains (each with difficulty levels; a problem is generated from ``(seed, domain, level, index)``):

- ``arithmetic`` -- word problems. Level 1: one addition or subtraction of one-digit numbers;
  level 2: the same with two-digit numbers; level 3: two steps (buy some, give some away).
- ``compare`` -- number comparison. Level 1: the larger of two two-digit numbers; level 2: the
  smallest of three three-digit numbers.

Every prompt asks for the final answer as a number. :func:`extract_answer` reads the last "the
answer is N" (or "#### N") if the response has one, else the response's last number (the GSM8K
convention), and :func:`check` compares it exactly with the answer. The checker is strict about the
format: "70 > 59" answers "59". (A stricter instruction, "End your reply with 'The answer is N.'",
made SmolLM2-135M answer worse: it often wrote "The answer is" followed by a number from the prompt.)

>>> p = make_problem("arithmetic", 1, 0, seed=0)
>>> check(p, f"... so the answer is {p.answer}."), check(p, "The answer is -999.")
(True, False)
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lmlab.io import atomic_write_text
from lmlab.rewardeval.data import bok_row

NAMES = ("Tom", "Anna", "Sam", "Lily", "Ben", "Mia", "Jack", "Emma", "Leo", "Zoe")
ITEMS = ("apples", "pencils", "stickers", "marbles", "books", "cookies", "coins", "cards")
SUFFIX = " Give the final answer as a number."
LEVELS = {"arithmetic": (1, 2, 3), "compare": (1, 2)}


@dataclass(frozen=True)
class Problem:
    question_id: str
    domain: str
    difficulty: int
    prompt: str
    answer: int


def _rng(seed: int, domain: str, level: int, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, sum(map(ord, domain)), level, index])


def make_problem(domain: str, level: int, index: int, seed: int = 0) -> Problem:
    """The ``index``-th problem of a domain and difficulty level (deterministic in its arguments)."""
    if domain not in LEVELS:
        raise ValueError(f"unknown domain {domain!r}; choose one of {', '.join(LEVELS)}")
    if level not in LEVELS[domain]:
        raise ValueError(f"domain {domain!r} has difficulty levels {LEVELS[domain]}, got {level}")
    r = _rng(seed, domain, level, index)
    qid = f"{domain}-{level}-{seed}-{index}"
    name, item = NAMES[r.integers(len(NAMES))], ITEMS[r.integers(len(ITEMS))]
    if domain == "arithmetic":
        if level in (1, 2):  # one addition or subtraction; one-digit numbers, then two-digit ones
            lo, hi = (1, 10) if level == 1 else (10, 60)
            a, b = (int(x) for x in r.integers(lo, hi, 2))
            if r.integers(2):
                q, ans = f"{name} has {a} {item} and gets {b} more. How many {item} does {name} have now?", a + b
            else:
                a, b = max(a, b), min(a, b)
                q, ans = f"{name} has {a} {item} and gives {b} away. How many {item} are left?", a - b
        else:
            a, b = (int(x) for x in r.integers(2, 10, 2))
            c = int(r.integers(1, a + b))
            q = (f"{name} has {a} {item}, buys {b} more and then gives {c} to a friend. "
                 f"How many {item} does {name} have now?")
            ans = a + b - c
    else:
        if level == 1:
            x, y = (int(v) for v in r.choice(np.arange(10, 100), 2, replace=False))
            q, ans = f"Which number is larger, {x} or {y}?", max(x, y)
        else:
            xs = [int(v) for v in r.choice(np.arange(100, 1000), 3, replace=False)]
            q, ans = f"Which is the smallest of these numbers: {xs[0]}, {xs[1]}, {xs[2]}?", min(xs)
    return Problem(qid, domain, level, q + SUFFIX, int(ans))


def make_problems(domains: dict[str, Sequence[int]] | None = None, per_level: int = 4, seed: int = 0) -> list[Problem]:
    """``per_level`` problems for each (domain, level); default every domain at every level."""
    domains = domains or LEVELS
    return [make_problem(d, lvl, i, seed) for d, levels in domains.items() for lvl in levels for i in range(per_level)]


_ANSWER_RE = re.compile(r"answer is\s*[:=]?\s*\**\s*\$?\s*(-?\d[\d,]*)", re.IGNORECASE)
_HASH_RE = re.compile(r"####\s*(-?\d[\d,]*)")
_NUMBER_RE = re.compile(r"-?\d[\d,]*")


def extract_answer(text: str) -> int | None:
    """The response's final answer: the last "answer is N" (or "#### N"), else its last number; None if none.

    >>> extract_answer("3 + 4 = 7. The answer is 7."), extract_answer("It is 12, I think"), extract_answer("no")
    (7, 12, None)
    """
    for pattern in (_ANSWER_RE, _HASH_RE, _NUMBER_RE):
        found = pattern.findall(text)
        if found:
            digits = found[-1].replace(",", "").strip()
            try:
                return int(digits)
            except ValueError:
                continue
    return None


def check(problem: Problem, response: str) -> bool:
    """Whether the response's final answer equals the problem's answer exactly."""
    return extract_answer(response) == problem.answer


def sample_seed(seed: int, index: int) -> int:
    return int(np.random.default_rng([seed, 7919, index]).integers(2**31 - 1))


def build_correctness_set(lm: Any, problems: Sequence[Problem], K: int = 8, out_path: str | Path | None = None,
                          temperature: float = 0.8, top_p: float = 0.95, max_new_tokens: int | dict[str, int] = 48,
                          seed: int = 0, model_name: str | None = None, resume: bool = True,
                          progress: bool = False, stats: dict[str, int] | None = None) -> list[dict[str, Any]]:
    """Sample K responses per problem from ``lm`` (its chat template, temperature sampling), label each
    with :func:`check`, and return (and, with ``out_path``, append to a JSONL file) best-of-K rows.

    Rows carry ``domain``, ``difficulty``, ``answer`` and ``extracted`` (each response's parsed answer)
    next to the PPE fields. With ``resume`` the rows already in ``out_path`` are kept and only the
    missing problems are sampled; each problem's sampling seed depends only on ``seed`` and its index,
    so an interrupted build resumes to the same rows. ``max_new_tokens`` may differ per domain. ``stats``, when
    given, receives how many rows were ``computed`` now and how many ``reused`` from the file.
    """
    if K < 1:
        raise ValueError(f"K must be >= 1, got {K}")
    name = model_name or getattr(lm, "name", "lm")
    done: dict[str, dict[str, Any]] = {}
    path = Path(out_path) if out_path is not None else None
    if path is not None and path.exists() and resume:
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:  # a line cut short by an interruption: sampled again below
                continue
            done[row["question_id"]] = row
        # keep the rows of these problems only (in order), dropping any cut-short line, so that the file is
        # exactly this set and appended rows start on a line of their own
        # (a row is reused only if it answers the same prompt with the same K and model)
        keep = [done[p.question_id] for p in problems if p.question_id in done
                and done[p.question_id].get("prompt") == p.prompt and f"response_{K}" in done[p.question_id]
                and f"response_{K + 1}" not in done[p.question_id] and done[p.question_id].get("model_name") == name]
        done = {r["question_id"]: r for r in keep}
        atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in keep))
    elif path is not None and path.exists():
        path.unlink()
    rows = []
    todo = [(i, p) for i, p in enumerate(problems)]
    it: Any = todo
    if progress:
        from tqdm import tqdm

        it = tqdm(todo, desc="sampling responses", leave=False)
    if stats is not None:
        stats.update(computed=sum(p.question_id not in done for p in problems),
                     reused=sum(p.question_id in done for p in problems))
    for i, p in it:
        if p.question_id in done:
            rows.append(done[p.question_id])
            continue
        budget = max_new_tokens[p.domain] if isinstance(max_new_tokens, dict) else max_new_tokens
        prompt = lm.chat_prompt(p.prompt)
        responses = [r.strip() for r in lm.generate([prompt] * K, max_new_tokens=budget, temperature=temperature,
                                                     top_p=top_p, seed=sample_seed(seed, i))]
        labels = [check(p, r) for r in responses]
        row = bok_row(p.question_id, p.prompt, name, responses, labels, domain=p.domain, difficulty=p.difficulty,
                      answer=p.answer, extracted=[extract_answer(r) for r in responses])
        rows.append(row)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a", encoding="utf-8") as f:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return rows


def problem_dict(p: Problem) -> dict[str, Any]:
    return asdict(p)
