"""An *arm*: a seed model improved for a number of iterations with one recipe, evaluated on held-out generated
problems before the first iteration and after each one. Both studies (TPO's thought and direct arms,
Meta-Rewarding) are arms; each arm lives in ``out/<arm>/`` with ``iter<t>/`` run directories and
``eval-iter<t>.json`` files, so a rerun resumes where it stopped.
"""

from __future__ import annotations

import gc
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lmlab.config import LMConfig
from lmlab.selfimprove.dpo import DPOSettings
from lmlab.selfimprove.judges import GenConfig, build_judge
from lmlab.selfimprove.loop import Item, IterationConfig, eval_summary, evaluate, problem_items, run_iteration

log = logging.getLogger("lmlab.cache")

#: the modules whose code decides an arm's files (samples, judgments, pairs, DPO, evaluations)
ARM_CODE = ("lmlab.selfimprove.arms", "lmlab.selfimprove.loop", "lmlab.selfimprove.dpo", "lmlab.selfimprove.judges",
            "lmlab.selfimprove.generation", "lmlab.selfimprove.sampling", "lmlab.selfimprove.meta",
            "lmlab.selfimprove.agreement", "lmlab.selfimprove.prompts", "lmlab.selfimprove.scoring")


def _no_progress(d: Any) -> Any:
    """A config dict without its progress switches (a bar shown or not changes no file)."""
    if isinstance(d, dict):
        return {k: _no_progress(v) for k, v in d.items() if k != "progress"}
    return d


#: problem-index offsets that keep the train, validation and test problems apart
TEST_OFFSET, VALID_OFFSET, TRAIN_OFFSET = 0, 10_000, 20_000


def load_trainable(lm_cfg: LMConfig, path: str | None = None) -> Any:
    from lmlab.lm import load_lm

    return load_lm(path or lm_cfg.model, device=lm_cfg.device, batch_size=lm_cfg.batch_size, needs=("trainable",))


def heldout(n_test: int, n_valid: int, seed: int) -> tuple[list[Item], list[Item]]:
    """The test and validation problems (disjoint from each other and from every iteration's training problems)."""
    return problem_items(n_test, seed, offset=TEST_OFFSET), problem_items(n_valid, seed, offset=VALID_OFFSET)


def train_items(n: int, seed: int, iteration: int) -> list[Item]:
    """Iteration ``iteration``'s training prompts: new problems every iteration (the papers discard earlier data)."""
    return problem_items(n, seed, offset=TRAIN_OFFSET + iteration * max(1, n // 5 + 1))


@dataclass
class ArmSpec:
    name: str
    iteration: IterationConfig
    iterations: int
    n_train: int
    #: per-iteration overrides of the iteration config (e.g. Meta-Rewarding's rho schedule), index t - 1
    schedule: Sequence[dict[str, Any]] = ()
    #: called after the seed evaluation and after each iteration with (lm, t) -> extra metrics (e.g. HH agreement)
    probe: Callable[[Any, int, Path], dict[str, Any]] | None = None
    #: builds extra DPO pairs for iteration t (Meta-Rewarding's judge pairs): (t) -> loop.ExtraPairs | None
    extra_pairs: Callable[[int], Any] | None = None


def move_aside(path: Path) -> Path:
    """Rename ``path`` to ``<name>.stale-<time>`` (``-1``, ``-2``, ... when that exists: two moves in one second,
    as a quick re-run makes, must not collide); the new path."""
    stamp = time.strftime("%Y%m%dT%H%M%S")
    aside, n = path.with_name(f"{path.name}.stale-{stamp}"), 1
    while aside.exists():
        aside, n = path.with_name(f"{path.name}.stale-{stamp}-{n}"), n + 1
    path.rename(aside)
    return aside


def run_arm(spec: ArmSpec, lm_cfg: LMConfig, dpo: DPOSettings, train: Any, test: Sequence[Item], valid: Sequence[Item],
            out: Path, seed: int, learn: bool = True, eval_max_new_tokens: int = 128, resume: bool = True,
            progress: bool = False, key: Any = None, code: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Seed evaluation, then ``spec.iterations`` iterations each followed by an evaluation; one record per t.

    ``key`` (the calling study's whole config) and ``code`` (its module) fingerprint the arm's directory with
    :data:`ARM_CODE` and the starting model's weights (:func:`lmlab.lm.weights.weights_fingerprint`)
    (:func:`lmlab.io.artifact_fingerprint`, in ``<arm>/arm.fingerprint.json``): a directory made
    under another fingerprint is moved aside to ``<arm>.stale-<time>`` (nothing in it is reused: evaluations,
    iterations, probes) and one line says why. Without ``key`` the directory is reused as it is.
    """
    arm = Path(out) / spec.name
    lm = load_trainable(lm_cfg)  # first: a model that cannot be trained fails before anything is written
    fp = None
    if key is not None:
        from lmlab.io import artifact_fingerprint, atomic_write_json, stale_reason

        from lmlab.lm.weights import weights_fingerprint

        fp = artifact_fingerprint(tuple(ARM_CODE) + tuple(code), {"arm": spec.name, "study": _no_progress(key)},
                                  [[it.id for it in test], [it.id for it in valid]],
                                  model=weights_fingerprint(lm_cfg.model))
        marker = arm / "arm.fingerprint.json"
        if arm.is_dir() and any(arm.iterdir()):
            try:
                old = json.loads(marker.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                old = None
            why = stale_reason(old, fp)
            if why is not None:
                aside = move_aside(arm)
                log.warning("%s: recomputed because %s (earlier files moved to %s)", arm, why, aside.name)
        arm.mkdir(parents=True, exist_ok=True)
        atomic_write_json(marker, fp, sort_keys=True)
    arm.mkdir(parents=True, exist_ok=True)
    cfg = spec.iteration
    t0 = time.perf_counter()
    seed_rows = evaluate(lm, test, cfg.thought, eval_max_new_tokens, arm / "eval-iter0.json", progress, resume)
    t1 = time.perf_counter()
    records = [{"iteration": 0, **eval_summary(seed_rows, seed_rows, seed=seed),
                **(spec.probe(lm, 0, arm) if spec.probe else {})}]
    records[0]["seconds"] = {"eval": round(t1 - t0, 1), "probe": round(time.perf_counter() - t1, 1)}
    prev_rows = seed_rows
    for t in range(1, spec.iterations + 1):
        run, t0 = arm / f"iter{t}", time.perf_counter()
        cfg_t = cfg.replace(**spec.schedule[t - 1]) if len(spec.schedule) >= t else cfg
        reused = resume and (run / "done.json").exists()
        if reused:
            rec = json.loads((run / "done.json").read_text())
            if (run / "model" / "config.json").exists():
                del lm
                lm = load_trainable(lm_cfg, str(run / "model"))
        else:
            gen = GenConfig(n=cfg_t.judge_n, temperature=cfg_t.judge_temperature,
                            max_new_tokens=cfg_t.judge_max_new_tokens, seed=seed + t, parser=cfg_t.judge_parser)
            judge = build_judge(cfg_t.judge, lm, gen)
            extra = spec.extra_pairs(t) if spec.extra_pairs else None
            rec = run_iteration(lm, train_items(spec.n_train, seed, t), cfg_t, dpo, train.seeded(seed + t), run, judge,
                                valid=valid, seed=seed * 1000 + t, learn=learn, extra_pairs=extra, resume=resume, all_malformed="skip",
                                progress=progress)
        te = time.perf_counter()
        if "dpo" not in rec and prev_rows is not None:  # no DPO step: the model is M_{t-1}, its greedy outputs too
            from lmlab.io import atomic_write_json

            rows = prev_rows
            atomic_write_json(arm / f"eval-iter{t}.json", rows)
        else:
            rows = evaluate(lm, test, cfg.thought, eval_max_new_tokens, arm / f"eval-iter{t}.json", progress, resume)
        prev_rows = rows
        t1 = time.perf_counter()
        records.append({"iteration": t, **eval_summary(rows, seed_rows, seed=seed), "train": _brief(rec),
                        **(spec.probe(lm, t, arm) if spec.probe else {})})
        t2 = time.perf_counter()
        records[-1]["seconds"] = {**rec.get("seconds", {}), "iteration_total": round(te - t0, 1),
                                 "eval": round(t1 - te, 1), "probe": round(t2 - t1, 1)}
        # for summary.json's stages
        records[-1]["stage"] = {"computed": not reused, "fingerprint": fp["digest"] if fp else "", "reason": (
            ("reused: the finished iteration with the same fingerprint" if fp else
             f"reused: {run.name}/done.json found (not fingerprinted: code and config not checked)") if reused
            else "computed now")}
    # free the model before the next arm loads its own copy; a full collection costs about half a second in a process
    # with many live objects, so it runs only for a model whose weights are worth it (not the tiny test models)
    big = _param_bytes(lm) > _COLLECT_ABOVE_BYTES
    del lm
    if big:
        gc.collect()
    return records


#: run_arm collects garbage after an arm only when its model's parameters take more than this
_COLLECT_ABOVE_BYTES = 64 * 2**20


def _param_bytes(lm: Any) -> int:
    model = getattr(lm, "hf_model", None)
    if model is None:
        return _COLLECT_ABOVE_BYTES + 1  # unknown size: collect
    return sum(p.numel() * p.element_size() for p in model.parameters())


def _brief(rec: dict[str, Any]) -> dict[str, Any]:
    out = {k: rec.get(k) for k in ("counts", "malformed_rate", "pairs", "extra", "judge", "judge_parse_rate",
                                   "sample_response_chars", "sample_thought_chars", "learn")}
    d = rec.get("dpo")
    if d:
        log = d.get("log", [])
        out["dpo"] = {"steps": d.get("steps"), "seconds": d.get("seconds"), "n_pairs": d.get("n_pairs"),
                      "pairs_truncated": d.get("pairs_truncated"),
                      "pairs_dropped_by_max_length": d.get("pairs_dropped_by_max_length"),
                      "selected_step": d.get("selected_step"), "valid_accuracy": d.get("valid_accuracy"),
                      "loss_first": log[0]["loss"] if log else None, "loss_last": log[-1]["loss"] if log else None,
                      "margin_first": log[0].get("rewards/margins") if log else None,
                      "margin_last": log[-1].get("rewards/margins") if log else None,
                      "reward_accuracy_last": log[-1].get("rewards/accuracies") if log else None}
    return out
