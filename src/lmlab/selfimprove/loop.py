"""One self-improvement iteration, M_t -> M_{t+1}, in its own resumable run directory:

    samples.jsonl   K outputs per prompt (appended per finished chunk of prompts; see sampling.py)
    scores.jsonl    the judge's scores of each prompt's well-formed responses (appended per prompt)
    pairs.jsonl     chosen / rejected pairs (actor pairs, plus any extra pairs such as judge pairs)
    dpo.json        the DPO log (loss, reward margins and accuracies per step) and the selected checkpoint
    model/          M_{t+1} (Hugging Face directory); ``done.json`` marks the iteration complete

A rerun of the same command skips what is on disk. Evaluation (:func:`evaluate`) is greedy decoding on held-out
generated problems with exact answers, scored on the parsed response only (a malformed output counts as wrong).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lmlab.config import Config, ConfigError
from lmlab.io import atomic_write_json, atomic_write_text
from lmlab.selfimprove.dpo import DPOSettings, run_dpo
from lmlab.selfimprove.generation import generate_rows
from lmlab.selfimprove.judges import Group, Judge
from lmlab.selfimprove.prompts import THOUGHT_KINDS, parse_thought, thought_prompt
from lmlab.selfimprove.sampling import _read_rows, sample_k
from lmlab.selfimprove.scoring import SELECTORS


class SelfImproveError(ConfigError):
    """An iteration cannot go on (no well-formed samples, no pairs, a model that cannot be trained)."""


@dataclass(frozen=True)
class Item:
    """A training or held-out prompt; ``answer`` is set for generated problems (the verifiable judge)."""

    id: str
    instruction: str
    answer: int | None = None


def problem_items(n: int, seed: int, domains: dict[str, Sequence[int]] | None = None, offset: int = 0) -> list[Item]:
    """``n`` generated problems with exact answers (:mod:`lmlab.rewardeval.builder`), cycling over every
    (domain, level); ``offset`` shifts the problem index so train / validation / test sets do not overlap."""
    from lmlab.rewardeval.builder import LEVELS, make_problem

    cells = [(d, lvl) for d, levels in (domains or LEVELS).items() for lvl in levels]
    out = []
    for i in range(n):
        d, lvl = cells[i % len(cells)]
        p = make_problem(d, lvl, offset + i // len(cells), seed=seed)
        out.append(Item(p.question_id, p.prompt, p.answer))
    return out


@dataclass(frozen=True)
class IterationConfig(Config):
    """Sampling, parsing, judging and pair selection of one iteration (the paper's values as defaults)."""

    K: int = 8
    temperature: float = 0.8
    top_p: float = 0.95
    max_new_tokens: int = 128
    thought: str = "none"  # none (direct responses) | generic | specific (TPO's thought prompts)
    judge: str = "verifiable"  # verifiable | rubric | pairwise | rm:NAME (lmlab.rewardeval reward models)
    judge_n: int = 1  # judgments per response (generative judges)
    judge_temperature: float = 0.0
    judge_max_new_tokens: int = 96
    judge_parser: str = "strict"  # strict ("Score: N", the rubric's format) | lenient (other labelled score forms)
    rho: float = 0.0  # length control: S' = N(s) - rho N(len) (tpo) or the quality tier (tier)
    selection: str = "tpo"  # tpo (argmax / argmin S') | tier (Meta-Rewarding's shortest-best / longest-worst)
    chunk: int = 4  # prompts per sampling call (K * chunk rows decoded together)
    max_chosen_chars: int = 0  # drop pairs whose chosen output is longer (0: no limit)

    def validate(self) -> None:
        if self.K < 2:
            raise ConfigError(f"iteration.K ({self.K}) must be >= 2: a pair needs two samples")
        if self.thought not in THOUGHT_KINDS:
            raise ConfigError(f"iteration.thought ({self.thought!r}) must be one of {', '.join(THOUGHT_KINDS)}")
        if self.selection not in SELECTORS:
            raise ConfigError(f"iteration.selection ({self.selection!r}) must be one of {', '.join(SELECTORS)}")
        if self.judge_parser not in ("strict", "lenient"):
            raise ConfigError(f"iteration.judge_parser ({self.judge_parser!r}) must be strict or lenient")
        if not 0 <= self.rho <= 1:
            raise ConfigError(f"iteration.rho ({self.rho}) must be in [0, 1]")
        if not (0 < self.top_p <= 1) or self.temperature < 0:
            raise ConfigError("iteration.top_p must be in (0, 1] and iteration.temperature >= 0")
        for k in ("max_new_tokens", "judge_n", "judge_max_new_tokens", "chunk"):
            if getattr(self, k) < 1:
                raise ConfigError(f"iteration.{k} ({getattr(self, k)}) must be >= 1")


def model_input(lm: Any, instruction: str, thought: str) -> str:
    return lm.chat_prompt(thought_prompt(instruction, thought))


def parse_samples(samples: dict[str, list[str]], thought: str) -> tuple[dict[str, list[tuple[int, str, str]]], dict[str, int]]:
    """Per prompt, the well-formed samples as ``(index, thought, response)``; counts of total and malformed."""
    out, total, bad = {}, 0, 0
    for pid, texts in samples.items():
        keep = []
        for k, t in enumerate(texts):
            total += 1
            parsed = parse_thought(t, thought)
            if parsed is None:
                bad += 1
            else:
                keep.append((k, parsed[0], parsed[1]))
        out[pid] = keep
    return out, {"samples": total, "malformed": bad}


def score_prompts(judge: Judge, items: Sequence[Item], parsed: dict[str, list[tuple[int, str, str]]],
                  path: Path | None, resume: bool = True, chunk: int = 4, progress: bool = False) -> dict[str, dict[str, Any]]:
    """Judge every prompt's well-formed responses; rows ``{"id", "index", "scores", "judgments"?}`` appended per
    prompt to ``path`` (resumable)."""
    done: dict[str, dict[str, Any]] = {}
    if path is not None and path.exists() and resume:
        rows = [r for r in _read_rows(path) if r.get("id") in parsed
                and r.get("index") == [k for k, _, _ in parsed[r["id"]]]]
        done = {r["id"]: r for r in rows}
        atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    todo = [it for it in items if it.id not in done and len(parsed.get(it.id, [])) >= 1]
    batches = [todo[i:i + chunk] for i in range(0, len(todo), chunk)]
    bar: Any = batches
    if progress:
        from tqdm import tqdm

        bar = tqdm(batches, desc=f"judging ({judge.name})", unit="chunk", leave=False)
    for batch in bar:
        groups = [Group(it.instruction, [r for _, _, r in parsed[it.id]], it.answer, it.id) for it in batch]
        scores = judge.score_groups(groups)
        judgments = getattr(judge, "last_judgments", None)
        for j, (it, s) in enumerate(zip(batch, scores)):
            row: dict[str, Any] = {"id": it.id, "index": [k for k, _, _ in parsed[it.id]],
                                   "scores": [None if not np.isfinite(x) else float(x) for x in s]}
            if judgments:
                row["judgments"] = [[[t, None if not np.isfinite(v) else v] for t, v in per] for per in judgments[j]]
            done[it.id] = row
            if path is not None:
                with path.open("a", encoding="utf-8") as f:
                    f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return done


def select_pairs(lm: Any, items: Sequence[Item], samples: dict[str, list[str]], scored: dict[str, dict[str, Any]],
                 parsed: dict[str, list[tuple[int, str, str]]], cfg: IterationConfig) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """One (chosen, rejected) pair per prompt; both keep the full output (thought and response)."""
    select = SELECTORS[cfg.selection]
    pairs, stats = [], {"prompts": len(items), "tied": 0, "too_few": 0, "too_long": 0}
    for it in items:
        row = scored.get(it.id)
        if row is None:
            stats["too_few"] += 1
            continue
        resp = {k: r for k, _, r in parsed[it.id]}
        ok = [(k, s) for k, s in zip(row["index"], row["scores"]) if s is not None]
        if len(ok) < 2:
            stats["too_few"] += 1
            continue
        idx = [k for k, _ in ok]
        pick = select([s for _, s in ok], [len(resp[k]) for k in idx], cfg.rho)
        if pick is None:
            stats["tied"] += 1
            continue
        c, r = idx[pick[0]], idx[pick[1]]
        chosen, rejected = samples[it.id][c], samples[it.id][r]
        if cfg.max_chosen_chars and len(chosen) > cfg.max_chosen_chars:
            stats["too_long"] += 1
            continue
        pairs.append({"id": it.id, "kind": "actor", "prompt": model_input(lm, it.instruction, cfg.thought),
                      "chosen": chosen, "rejected": rejected, "chosen_index": c, "rejected_index": r,
                      "chosen_score": dict(ok)[c], "rejected_score": dict(ok)[r],
                      "chosen_response": resp[c], "rejected_response": resp[r]})
    stats["pairs"] = len(pairs)
    return pairs, stats


def evaluate(lm: Any, items: Sequence[Item], thought: str, max_new_tokens: int = 128,
             path: Path | None = None, progress: bool = False, resume: bool = True) -> list[dict[str, Any]]:
    """Greedy outputs on held-out problems: per item ``correct`` (parsed response only), ``malformed``, the
    response and thought lengths in characters. Cached in ``path``: reused when its problem ids match and
    ``resume``; with ``resume=False`` an existing file is recomputed and one line says so."""
    import logging

    from lmlab.rewardeval.builder import extract_answer

    if path is not None and path.exists():
        if not resume:
            logging.getLogger("lmlab.cache").warning("%s: recomputed because resume=False (the file is discarded)", path)
        else:
            rows = json.loads(path.read_text())
            if [r["id"] for r in rows] == [it.id for it in items]:
                return rows
    prompts = [model_input(lm, it.instruction, thought) for it in items]
    bar: Any = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(prompts), desc="held-out eval", unit="problem", leave=False)
    texts = generate_rows(lm, prompts, max_new_tokens, 0.0, on_done=lambda i, t: bar.update() if bar else None)
    if bar is not None:
        bar.close()
    rows = []
    for it, t in zip(items, texts):
        p = parse_thought(t.strip(), thought)
        resp = p[1] if p else ""
        rows.append({"id": it.id, "malformed": p is None, "correct": bool(p) and extract_answer(resp) == it.answer,
                     "response_chars": len(resp), "thought_chars": len(p[0]) if p else 0, "output": t.strip()})
    if path is not None:
        atomic_write_json(path, rows)
    return rows


def eval_summary(rows: Sequence[dict[str, Any]], seed_rows: Sequence[dict[str, Any]] | None = None,
                 n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Accuracy with a bootstrap CI, lengths, malformed rate, and the win rate against the seed model's outputs
    on the same problems (win 1, tie 1/2, loss 0 by the verifiable judge) with its CI."""
    from lmlab.rewardeval.metrics import bootstrap_mean_ci

    acc = np.array([float(r["correct"]) for r in rows])
    ok = [r for r in rows if not r["malformed"]]
    out: dict[str, Any] = {
        "n": len(rows), "accuracy": float(acc.mean()) if len(acc) else float("nan"),
        "accuracy_ci": list(bootstrap_mean_ci(acc, n_boot=n_boot, seed=seed)),
        "malformed_rate": float(np.mean([r["malformed"] for r in rows])) if rows else float("nan"),
        "response_chars": float(np.mean([r["response_chars"] for r in ok])) if ok else float("nan"),
        "thought_chars": float(np.mean([r["thought_chars"] for r in ok])) if ok else float("nan")}
    if seed_rows is not None:
        s = np.array([float(r["correct"]) for r in seed_rows])
        win = (acc > s) + 0.5 * (acc == s)
        out["win_rate_vs_seed"] = float(win.mean()) if len(win) else float("nan")
        out["win_rate_vs_seed_ci"] = list(bootstrap_mean_ci(win, n_boot=n_boot, seed=seed))
        out["accuracy_delta_vs_seed"] = float(acc.mean() - s.mean()) if len(acc) else float("nan")
    return out


ExtraPairs = Callable[[Any, Sequence[Item], dict[str, list[str]], dict[str, dict[str, Any]],
                       dict[str, list[tuple[int, str, str]]], Path], tuple[list[dict[str, Any]], dict[str, Any]]]


def run_iteration(lm: Any, items: Sequence[Item], cfg: IterationConfig, dpo: DPOSettings, train: Any,
                  run_dir: str | Path, judge: Judge, valid: Sequence[Item] = (), seed: int = 0, learn: bool = True,
                  extra_pairs: ExtraPairs | None = None, resume: bool = True, progress: bool = False,
                  stop_after_chunks: int | None = None, all_malformed: str = "raise") -> dict[str, Any]:
    """M_t (``lm``, trained in place) -> M_{t+1}; returns the iteration's record (also ``run_dir/done.json``).

    ``all_malformed``: ``"raise"`` (one-line :class:`SelfImproveError` when every sample is empty or malformed)
    or ``"skip"`` (record it; no pairs, no DPO step: what a study does, so the arm's numbers are still reported).
    ``learn=False`` (the negative control) builds the pairs but skips DPO. ``valid``: held-out problems on which
    the DPO snapshot with the best accuracy is kept (with ``dpo.candidates > 1``).
    """
    run = Path(run_dir)
    run.mkdir(parents=True, exist_ok=True)
    if not (getattr(lm, "has", None) and lm.has("trainable")):
        raise SelfImproveError(f"the trained model ({getattr(lm, 'name', type(lm).__name__)}) has no 'trainable' "
                               "capability; use the default model, a .gguf file or a Hugging Face directory")
    if resume and (run / "done.json").exists():
        return json.loads((run / "done.json").read_text())
    ids = [it.id for it in items]
    inputs = [model_input(lm, it.instruction, cfg.thought) for it in items]
    clock = [time.perf_counter()]
    seconds: dict[str, float] = {}

    def lap(name: str) -> None:  # wall seconds of each stage in this process (a resumed stage counts its rest)
        now = time.perf_counter()
        seconds[name] = round(now - clock[0], 1)
        clock[0] = now

    samples = sample_k(lm, ids, inputs, cfg.K, run / "samples.jsonl", cfg.temperature, cfg.top_p, cfg.max_new_tokens,
                       seed=seed, chunk=cfg.chunk, resume=resume, progress=progress, stop_after=stop_after_chunks)
    if stop_after_chunks is not None and len(samples) < len(items):
        return {"interrupted": True, "sampled": len(samples)}
    lap("sampling")
    parsed, counts = parse_samples(samples, cfg.thought)
    if counts["samples"] and counts["malformed"] == counts["samples"] and all_malformed == "raise":
        raise SelfImproveError(f"all {counts['samples']} samples are empty or malformed for thought prompt "
                               f"'{cfg.thought}'; raise iteration.max_new_tokens or use iteration.thought=none")
    scored = score_prompts(judge, items, parsed, run / "scores.jsonl", resume=resume, chunk=cfg.chunk, progress=progress)
    lap("judging")
    pairs, pstats = select_pairs(lm, items, samples, scored, parsed, cfg)
    extra_stats: dict[str, Any] = {}
    if extra_pairs is not None:
        more, extra_stats = extra_pairs(lm, items, samples, scored, parsed, run)
        pairs = pairs + more
        lap("extra_pairs")
    atomic_write_text(run / "pairs.jsonl", "".join(json.dumps(p, ensure_ascii=False) + "\n" for p in pairs))
    record: dict[str, Any] = {"counts": counts, "malformed_rate": counts["malformed"] / max(1, counts["samples"]),
                              "pairs": pstats, "extra": extra_stats, "judge": judge.name,
                              "judge_parse_rate": judge.stats.parse_rate if judge.generative else None,
                              "learn": learn}
    lengths = [len(r) for v in parsed.values() for _, _, r in v]
    thoughts = [len(t) for v in parsed.values() for _, t, _ in v]
    record["sample_response_chars"] = float(np.mean(lengths)) if lengths else float("nan")
    record["sample_thought_chars"] = float(np.mean(thoughts)) if thoughts else float("nan")
    if learn and not pairs:
        record["dpo_skipped"] = "no preference pairs (every prompt's samples tied or were malformed)"
    elif learn:
        res = run_dpo(lm, pairs, dpo, train, run, progress=progress)
        snaps = res.pop("snapshots")
        chosen_step = snaps[-1][0]
        if len(snaps) > 1 and valid:
            accs = []
            for step, sd in snaps:
                if sd is not None:
                    lm.hf_model.load_state_dict(sd)
                rows = evaluate(lm, valid, cfg.thought, cfg.max_new_tokens, run / f"valid-step{step}.json",
                                resume=resume)
                accs.append(float(np.mean([r["correct"] for r in rows])))
            best = int(np.argmax(accs))  # ties: the earliest snapshot
            chosen_step = snaps[best][0]
            if snaps[best][1] is not None:
                lm.hf_model.load_state_dict(snaps[best][1])
            res["valid_accuracy"] = dict(zip([s for s, _ in snaps], accs))
        res["selected_step"] = chosen_step
        record["dpo"] = res
        atomic_write_json(run / "dpo.json", res)
        lm.hf_model.save_pretrained(run / "model")
        lm.hf_tokenizer.save_pretrained(run / "model")
        lap("dpo")
    record["seconds"] = seconds
    atomic_write_json(run / "done.json", record)
    return record
