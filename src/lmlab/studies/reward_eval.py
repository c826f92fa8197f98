"""PPE reward-model evaluation (Frick et al., How to Evaluate Reward Models for RLHF, arXiv 2410.14872).

PPE scores a reward model (RM) on proxy tasks -- real human preference pairs and verifiable-correctness
("best-of-K") sets -- with a dozen metrics, and asks which metric predicts the RM's value after RLHF.
This study runs the same pipeline at laptop scale:

1. **Correctness set.** :mod:`lmlab.rewardeval.builder` generates exactly checkable problems
   (arithmetic word problems at three difficulty levels, number comparison at two), samples K
   responses per problem from the LM (default: SmolLM2-135M-Instruct) and labels each by its checker.
   Or ``data`` names best-of-K / preference files to evaluate instead (``--data``).
2. **Human preference.** A fixed subsample of Anthropic HH-RLHF harmless-base test pairs (bundled,
   MIT), in the PPE preference schema; prompts are clipped to their last turns for CPU cost.
3. **Reward signals** (``rms``, ``--rm``): the LLM judge (log-odds of Yes), the implicit DPO reward
   (the model with its chat template vs the same model on the plain prompt), and a length baseline;
   any registered RM (``judge-pairwise``, ``hf:PATH``) can be added.
4. **Metrics** (:mod:`lmlab.rewardeval.metrics`): per domain and level, best-of-K curves, pairwise
   accuracy, improvement over the base, error to the oracle curve, area under the accuracy-vs-K curve,
   ROC-AUC, row-wise Pearson, with bootstrap CIs over prompts; cross-domain aggregation (mean / min /
   low quantiles); on the preference pairs, accuracy with a bootstrap CI (HH has no model identities,
   so the leaderboard metrics -- Spearman/Kendall, separability, confidence agreement, Brier -- are
   computed only for files that have them, e.g. PPE-Human-Preference).
5. **Claims.** PPE's headline claims concern post-RLHF outcomes (DPO with 9 RMs, then Chatbot Arena
   votes); those are ``not_comparable`` here. What is testable at this scale -- best-of-K
   over-optimisation and the agreement between correctness metrics -- is tested.

Every scoring pass is cached in the run directory (``scores/``), chunk by chunk, and the correctness
set is appended problem by problem, so an interrupted run resumes to the same numbers.
"""

from __future__ import annotations

import dataclasses
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from lmlab.config import Config, ConfigError, LMConfig
from lmlab.io import artifact_fingerprint, atomic_write_text, file_stage, mark_file, stage_record
from lmlab.rewardeval.data import BUNDLED_HH  # light: numpy and lmlab.config only
from lmlab.studies.base import (Claim, Result, Study, all_of, at_least, is_true, load_study_lm, not_comparable,
                                pyplot, save_figure)

# Claim thresholds.
# bok_overoptimisation: (RM, domain) cells where the RM is correlated with correctness (pairwise accuracy's 95%
# bootstrap CI above 0.5) and the per-prompt fall BoK(overopt_k) - BoK(K) is significantly above 0 (one-sided
# Wilcoxon signed-rank test over prompts, Holm-corrected over every (RM, domain) cell tested, family-wise alpha)
MIN_OVEROPT_CELLS = 1
OVEROPT_ALPHA = 0.05
MIN_PAIRWISE_CORRELATED = 0.5  # an RM is "correlated with correctness" in a cell when its pairwise CI is above this
MIN_AGREE_RHO = 0.5  # correctness_metrics_agree: Spearman rho of pairwise accuracy vs best-of-K improvement
MIN_AGREE_CELLS = 4  # ... over at least this many (RM, domain) cells
PAPER_PEAK_PEARSON = "0.77-0.80"  # low_quantile_aggregation: peak Pearson with the downstream score


@dataclass(frozen=True)
class RewardEvalConfig(Config):
    seed: int = 0
    lm: LMConfig = field(default_factory=LMConfig)  # the policy that answers, and the LM behind judge/implicit
    rms: tuple[str, ...] = ("length", "judge", "implicit")  # lmlab.rewardeval.models specs: name or name:argument
    data: tuple[str, ...] = ()  # best-of-K / preference files; empty: build the correctness set + bundled HH
    on_bad_row: Literal["fail", "skip"] = "fail"
    # correctness-set builder
    domains: tuple[str, ...] = ("arithmetic", "compare")
    per_level: int = 10  # problems per (domain, difficulty level)
    K: int = 16
    temperature: float = 0.8
    top_p: float = 0.95
    max_new_tokens: int = 40
    # human preference (used when `data` is empty)
    preference_data: str = "bundled"  # "bundled" (HH-RLHF harmless-base subsample), a file, or "" (none)
    n_preference_pairs: int = 256
    max_prompt_chars: int = 600  # preference prompts keep their last turns up to this length
    # metrics
    n_boot: int = 1000
    overopt_k: int = 2  # over-optimisation: BoK(overopt_k) vs BoK(K)
    min_mixed_prompts: int = 4  # a domain enters the over-optimisation test with this many mixed-label prompts
    score_chunk: int = 16
    progress: bool = True

    def validate(self) -> None:
        from lmlab.rewardeval.builder import LEVELS
        from lmlab.rewardeval.models import REWARD_MODELS

        if not self.rms:
            raise ConfigError("RewardEvalConfig.rms: give at least one reward model, e.g. --rm length")
        REWARD_MODELS.check([spec.partition(":")[0] for spec in self.rms], "RewardEvalConfig.rms")
        for d in self.domains:
            if d not in LEVELS:
                raise ConfigError(f"RewardEvalConfig.domains: unknown domain {d!r}; choose from {', '.join(LEVELS)}")
        if self.K < 2:
            raise ConfigError(f"RewardEvalConfig.K must be >= 2 (best-of-K needs a choice), got {self.K}")
        if not 1 <= self.overopt_k < self.K:
            raise ConfigError(f"RewardEvalConfig.overopt_k must be in [1, K), got {self.overopt_k}")
        for name in ("per_level", "n_preference_pairs", "n_boot", "score_chunk", "max_new_tokens"):
            if getattr(self, name) < 1:
                raise ConfigError(f"RewardEvalConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.temperature <= 0:
            raise ConfigError("RewardEvalConfig.temperature must be > 0: best-of-K needs K different samples")
        for p in self.data:
            if not Path(p).expanduser().exists():
                raise ConfigError(f"RewardEvalConfig.data: file {p} does not exist")
        if self.preference_data not in ("bundled", "") and not Path(self.preference_data).expanduser().exists():
            raise ConfigError(f"RewardEvalConfig.preference_data: file {self.preference_data} does not exist; "
                              "use 'bundled', '' or an existing file")


def _wilcoxon_greater(d: np.ndarray) -> float:
    """One-sided p-value that the per-prompt values ``d`` are centred above 0 (Wilcoxon signed-rank, SciPy; zero
    differences dropped); 1.0 when every value is 0 or not finite.

    The same test as ``scipy.stats.wilcoxon(d, alternative="greater")`` (method "auto"), p-values identical: with
    tied |d| and at most 13 values SciPy runs an exact sign-flip ``permutation_test`` over all 2**n flips but
    calls its statistic once per flip (seconds per call); here the same ``permutation_test`` gets the statistic
    (sum of the ranks of |d| where d > 0; flips leave |d| and its ranks unchanged) in vectorized form."""
    from scipy.stats import permutation_test, rankdata, wilcoxon

    d = np.asarray(d, float)
    d = d[np.isfinite(d) & (d != 0)]
    if len(d) == 0:
        return 1.0
    a = np.abs(d)
    if len(d) <= 13 and len(np.unique(a)) < len(a):  # SciPy's "auto" choice of its permutation test
        ranks = rankdata(a)

        def t_plus(x: np.ndarray, axis: int) -> np.ndarray:
            return np.sum(np.where(x > 0, ranks, 0.0), axis=axis)

        return float(permutation_test((d,), t_plus, permutation_type="samples", vectorized=True,
                                      alternative="greater", axis=-1).pvalue)
    return float(wilcoxon(d, alternative="greater").pvalue)


def _holm(p: dict[str, float]) -> dict[str, float]:
    """Holm-Bonferroni adjusted p-values (step-down, monotone, capped at 1)."""
    order = sorted(p, key=lambda k: p[k])
    out, running = {}, 0.0
    for i, k in enumerate(order):
        running = max(running, min(1.0, (len(order) - i) * p[k]))
        out[k] = running
    return out


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:80]


def _warn_skipped(ds: Any) -> None:
    if ds.skipped:
        first = "; ".join(f"line {ln}: {msg}" for ln, msg in ds.skipped[:3])
        print(f"warning: skipped {len(ds.skipped)} malformed row(s) of {ds.path} ({first}"
              f"{'; ...' if len(ds.skipped) > 3 else ''})", file=sys.stderr)


class RewardEvalStudy(Study):
    name = "reward-eval"
    title = "PPE reward-model evaluation: best-of-K correctness sets and human preference pairs"
    paper = "Frick et al., How to Evaluate Reward Models for RLHF (PPE), ICLR 2025, arXiv 2410.14872"
    config_cls = RewardEvalConfig

    def quick_config(self) -> RewardEvalConfig:
        """2 problems per level (10 problems) x K=8 responses of up to 32 tokens, 20 HH pairs (prompts
        clipped to 400 characters), 3 reward signals (docs/studies/reward-eval.md has the measured time)."""
        return RewardEvalConfig(per_level=2, K=8, max_new_tokens=32, n_preference_pairs=20, max_prompt_chars=400)

    tiny = ("per_level=1", "K=4", "max_new_tokens=4", "n_preference_pairs=4", "n_boot=50", "min_mixed_prompts=1",
            "progress=false")

    def control_config(self, cfg: RewardEvalConfig) -> RewardEvalConfig:
        """The same correctness set and preference pairs scored by three null reward models (``random:0..2``),
        which know nothing about the responses."""
        return cfg.replace(rms=("random:0", "random:1", "random:2"))

    # -- pipeline --------------------------------------------------------------------------------------
    needs_lm = True

    def lm_needs(self, cfg: RewardEvalConfig) -> tuple[str, ...]:
        """What the reward models ask of ``cfg.lm`` beyond text (e.g. ``implicit``: a model that runs here), so
        that ``--rm implicit`` with an HTTP endpoint fails in one line before the correctness set is built."""
        from lmlab.rewardeval.models import rm_class

        needs: list[str] = []
        for spec in cfg.rms:
            cls, _ = rm_class(spec)
            needs += [n for n in (cls.lm_needs if cls.needs_lm else ()) if n not in needs]
        return tuple(needs)

    def execute(self, cfg: RewardEvalConfig, out: Path, quick: bool, resume: bool) -> Result:
        from lmlab.rewardeval.data import BestOfKSet, clip_prompt, read_any, read_best_of_k, read_preference
        from lmlab.rewardeval.models import rm_class
        from lmlab.rewardeval.scoring import SCORES_FILE, cached_scores

        timings: dict[str, float] = {}
        lm = None
        build = not cfg.data
        classes = {spec: rm_class(spec) for spec in cfg.rms}  # spec -> (class, argument)
        if build or any(cls.needs_lm for cls, _ in classes.values()):
            t = time.perf_counter()
            lm = load_study_lm(cfg.lm)
            timings["load_lm"] = round(time.perf_counter() - t, 2)

        bok_sets: dict[str, Any] = {}
        pref_sets: dict[str, Any] = {}
        stages: dict[str, Any] = {}
        if build:
            from lmlab.lm.caching import lm_code
            from lmlab.rewardeval.builder import LEVELS, build_correctness_set, make_problems

            t = time.perf_counter()
            problems = make_problems({d: LEVELS[d] for d in cfg.domains}, cfg.per_level, cfg.seed)
            path = out / "correctness_set.jsonl"
            # the rows depend on the model's weights, the sampling settings, the problems and the checker's code
            fp = artifact_fingerprint(
                ("lmlab.rewardeval.builder", *lm_code(lm)),
                {"model": lm.fingerprint, "K": cfg.K, "temperature": cfg.temperature, "top_p": cfg.top_p,
                 "max_new_tokens": cfg.max_new_tokens, "seed": cfg.seed},
                [dataclasses.asdict(p) for p in problems])
            st = file_stage(path, fp, resume)
            mark_file(path, fp)  # before sampling: every row appended from here on is made under this fingerprint
            built: dict[str, int] = {}
            build_correctness_set(lm, problems, cfg.K, path, cfg.temperature, cfg.top_p, cfg.max_new_tokens,
                                  cfg.seed, model_name=getattr(lm, "name", cfg.lm.model), resume=not st["computed"],
                                  progress=cfg.progress, stats=built)
            stages["correctness_set"] = stage_record(
                built["computed"], built["reused"], fp["digest"],
                stale=st["reason"].removeprefix("recomputed because ") if st["reason"].startswith("recomputed") else None)
            timings["build_correctness_set"] = round(time.perf_counter() - t, 2)
            bok_sets["correctness"] = read_best_of_k(path, on_error="fail")
            if cfg.preference_data:
                src = BUNDLED_HH if cfg.preference_data == "bundled" else Path(cfg.preference_data)
                ds = read_preference(src, cfg.on_bad_row, seed=cfg.seed)
                _warn_skipped(ds)
                ds = ds.subset(range(min(cfg.n_preference_pairs, len(ds))))
                pref_sets["hh-rlhf" if cfg.preference_data == "bundled" else _safe(Path(src).stem)] = ds
        else:
            for p in cfg.data:
                ds = read_any(p, cfg.on_bad_row, seed=cfg.seed)
                _warn_skipped(ds)
                (bok_sets if isinstance(ds, BestOfKSet) else pref_sets)[_safe(Path(p).name)] = ds

        rms = {spec: cls.from_study(arg, lm, cfg) for spec, (cls, arg) in classes.items()}
        for spec, rm in rms.items():
            rm.spec = spec  # part of the score cache's key

        # -- scoring (cached per RM fingerprint and item, in the run directory) -------------------------
        if not resume:
            (out / "scores" / SCORES_FILE).unlink(missing_ok=True)
        bok_scores: dict[str, dict[str, np.ndarray]] = {}
        for tag, ds in bok_sets.items():
            prompts = [p for p, rs in zip(ds.prompt, ds.responses) for _ in rs]
            responses = [r for rs in ds.responses for r in rs]
            for spec, rm in rms.items():
                t = time.perf_counter()
                flat = cached_scores(rm, list(zip(prompts, responses)),
                                     lambda ix: rm.score_batch([prompts[i] for i in ix], [responses[i] for i in ix]),
                                     out / "scores", cfg.score_chunk, f"{tag}:{spec}", "score", cfg.progress,
                                     stage=stages.setdefault(f"scores:{tag}:{spec}", {}))
                bok_scores.setdefault(tag, {})[spec] = flat.reshape(len(ds), ds.K)
                timings[f"score {tag} {spec}"] = round(time.perf_counter() - t, 2)
        pref_margins: dict[str, dict[str, np.ndarray]] = {}
        for tag, ds in pref_sets.items():
            prompts = [clip_prompt(p, cfg.max_prompt_chars) for p in ds.prompt]
            for spec, rm in rms.items():
                t = time.perf_counter()
                m = cached_scores(rm, list(zip(prompts, ds.response_1, ds.response_2)),
                                  lambda ix: rm.compare([prompts[i] for i in ix], [ds.response_1[i] for i in ix],
                                                        [ds.response_2[i] for i in ix]),
                                  out / "scores", cfg.score_chunk, f"{tag}:{spec}", "compare", cfg.progress,
                                  stage=stages.setdefault(f"scores:{tag}:{spec}", {}))
                pref_margins.setdefault(tag, {})[spec] = m
                timings[f"score {tag} {spec}"] = round(time.perf_counter() - t, 2)

        # -- metrics, claims, figures -------------------------------------------------------------------
        bok_tables = {tag: self._bok_metrics(ds, bok_scores[tag], cfg) for tag, ds in bok_sets.items()}
        pref_tables = {tag: self._pref_metrics(ds, pref_margins[tag], cfg) for tag, ds in pref_sets.items()}
        table_md = self._write_table(out, bok_tables, pref_tables)
        claims = self._claims(bok_tables, pref_tables, cfg)
        figures = self._figures(out, bok_tables, pref_tables)
        metrics = {
            "model": getattr(lm, "name", cfg.lm.model) if lm is not None else None,
            "reward_models": list(cfg.rms),
            "best_of_k": bok_tables, "preference": pref_tables,
            "data": {tag: {"path": ds.path, "rows": len(ds), "skipped_rows": ds.skipped}
                     for tag, ds in {**bok_sets, **pref_sets}.items()},
            "timings_s": timings, "metric_table": table_md,
        }
        return Result(claims, metrics, figures, "rewardeval/1", stages=stages)

    # -- best-of-K metrics ------------------------------------------------------------------------------
    @staticmethod
    def _bok_metrics(ds: Any, scores: dict[str, np.ndarray], cfg: RewardEvalConfig) -> dict[str, Any]:
        from lmlab.rewardeval.metrics import (aggregate_domains, best_of_k_curve, bok_pairwise_accuracy,
                                              bok_summary, bootstrap_mean_ci)

        groups: dict[str, np.ndarray] = {}
        dom = np.array(ds.domain)
        diff = np.array([str(e.get("difficulty", "")) for e in ds.extra])
        for d in sorted(set(ds.domain)):
            groups[d] = np.flatnonzero(dom == d)
            for lvl in sorted(set(diff[dom == d]) - {""}):
                groups[f"{d}/L{lvl}"] = np.flatnonzero((dom == d) & (diff == lvl))
        if len(set(ds.domain)) > 1:
            groups["all"] = np.arange(len(ds))
        labels = ds.labels
        k0 = cfg.overopt_k
        out: dict[str, Any] = {"K": ds.K, "groups": {}, "aggregate": {}}
        for g, idx in groups.items():
            c = labels[idx]
            row: dict[str, Any] = {"n_prompts": int(len(idx)), "base_accuracy": float(c.mean()),
                                   "prompts_with_mixed_labels": int(((c.sum(1) > 0) & (c.sum(1) < ds.K)).sum()),
                                   "rms": {}}
            for spec, s_all in scores.items():
                s = s_all[idx]
                summ = bok_summary(s, c)
                curves = best_of_k_curve(s, c)
                per_row_acc = bok_pairwise_accuracy(s, c, per_row=True)
                improvement = curves[:, -1] - curves[:, 0]
                fall = curves[:, k0 - 1] - curves[:, -1]
                boot = dict(n_boot=cfg.n_boot, seed=cfg.seed)
                # every quantity is a mean over prompts of a per-prompt value: resample prompts
                summ["ci"] = {
                    "pairwise_accuracy": bootstrap_mean_ci(per_row_acc, **boot),  # prompts with a pair
                    "improvement": bootstrap_mean_ci(improvement, **boot),
                    "end_bok": bootstrap_mean_ci(curves[:, -1], **boot),
                    f"fall_k{k0}_to_K": bootstrap_mean_ci(fall, **boot),
                }
                summ[f"fall_k{k0}_to_K"] = float(fall.mean())
                summ[f"fall_k{k0}_to_K_p_one_sided"] = _wilcoxon_greater(fall)
                row["rms"][spec] = summ
            out["groups"][g] = row
        domains = [g for g in groups if "/" not in g and g != "all"]
        for spec in scores:
            out["aggregate"][spec] = {
                m: aggregate_domains({d: out["groups"][d]["rms"][spec][m] for d in domains})
                for m in ("pairwise_accuracy", "improvement", "end_bok", "max_bok", "auc_k", "gt_mse", "roc_auc")
            }
        return out

    # -- preference metrics -----------------------------------------------------------------------------
    @staticmethod
    def _pref_metrics(ds: Any, margins: dict[str, np.ndarray], cfg: RewardEvalConfig) -> dict[str, Any]:
        from lmlab.rewardeval.metrics import bootstrap_mean_ci, pair_correctness, preference_metrics

        out: dict[str, Any] = {"n_pairs": len(ds), "n_untied": int((ds.label != 0).sum()),
                               "n_models": len(set(ds.model_a) | set(ds.model_b)), "rms": {}}
        for spec, m in margins.items():
            res = preference_metrics(m, ds.label, ds.model_a, ds.model_b, ds.domain, n_boot=min(cfg.n_boot, 200),
                                     seed=cfg.seed)
            credit = pair_correctness(m, ds.label)
            res["accuracy_ci"] = bootstrap_mean_ci(credit, n_boot=cfg.n_boot, seed=cfg.seed)  # untied pairs
            res["rm_ties"] = int((m == 0).sum())
            out["rms"][spec] = res
        return out

    # -- the metric table -------------------------------------------------------------------------------
    @staticmethod
    def _write_table(out: Path, bok: dict[str, Any], pref: dict[str, Any]) -> str:
        f3 = (lambda v: "n/a" if v is None or not np.isfinite(v) else f"{v:.3f}")
        lines = []
        for tag, t in bok.items():
            lines += [f"### best-of-K: {tag} (K = {t['K']})", "",
                      "| group | n | base | RM | pairwise acc [95% CI] | BoK(K) | max BoK | improvement [95% CI] | "
                      "AUC_K | GT MSE | ROC-AUC | row Pearson |",
                      "|---|---|---|---|---|---|---|---|---|---|---|---|"]
            for g, row in t["groups"].items():
                for spec, r in row["rms"].items():
                    ci_a, ci_i = r["ci"]["pairwise_accuracy"], r["ci"]["improvement"]
                    lines.append(
                        f"| {g} | {row['n_prompts']} | {f3(row['base_accuracy'])} | {spec} | {f3(r['pairwise_accuracy'])} "
                        f"[{f3(ci_a[0])}, {f3(ci_a[1])}] | {f3(r['end_bok'])} | {f3(r['max_bok'])} | "
                        f"{f3(r['improvement'])} [{f3(ci_i[0])}, {f3(ci_i[1])}] | {f3(r['auc_k'])} | "
                        f"{f3(r['gt_mse'])} | {f3(r['roc_auc'])} | {f3(r['rowwise_pearson'])} |")
            lines.append("")
        for tag, t in pref.items():
            lines += [f"### human preference: {tag} ({t['n_pairs']} pairs, {t['n_models']} model name(s))", "",
                      "| RM | accuracy [95% CI] | RM ties | Spearman | Kendall | separability | conf. agreement | Brier |",
                      "|---|---|---|---|---|---|---|---|"]
            for spec, r in t["rms"].items():
                ci = r["accuracy_ci"]
                lines.append(f"| {spec} | {f3(r['accuracy'])} [{f3(ci[0])}, {f3(ci[1])}] | {r['rm_ties']} | "
                             f"{f3(r['spearman'])} | {f3(r['kendall'])} | {f3(r['separability'])} | "
                             f"{f3(r['confidence_agreement'])} | {f3(r['brier'])} |")
            lines.append("")
        text = "\n".join(lines)
        atomic_write_text(out / "metrics_table.md", text + "\n")
        return text

    # -- claims -----------------------------------------------------------------------------------------
    @staticmethod
    def _claims(bok: dict[str, Any], pref: dict[str, Any], cfg: RewardEvalConfig) -> list[Claim]:
        from scipy.stats import spearmanr

        claims = []
        k0 = cfg.overopt_k
        # (1) over-optimisation: some RM's BoK falls as K grows (paper: on MBPP-Plus)
        falls: dict[str, Any] = {}
        cells = []  # (rm, group, pairwise accuracy, improvement) for claim 2
        for tag, t in bok.items():
            for g, row in t["groups"].items():
                if "/" in g or g == "all":  # domains only: levels are too small, "all" mixes domains
                    continue
                for spec, r in row["rms"].items():
                    lo, hi = r["ci"][f"fall_k{k0}_to_K"]
                    pa_lo = r["ci"]["pairwise_accuracy"][0]
                    falls[f"{tag}:{g}:{spec}"] = {"fall": round(r[f"fall_k{k0}_to_K"], 4),
                                                  "ci95": [round(lo, 4), round(hi, 4)],
                                                  "p_one_sided": r[f"fall_k{k0}_to_K_p_one_sided"],
                                                  "pairwise_accuracy": round(r["pairwise_accuracy"], 4),
                                                  "pairwise_accuracy_ci95_low": round(pa_lo, 4),
                                                  "rm_correlated_with_correctness": bool(
                                                      np.isfinite(pa_lo) and pa_lo > MIN_PAIRWISE_CORRELATED),
                                                  "n_mixed_prompts": row["prompts_with_mixed_labels"]}
                    if np.isfinite(r["pairwise_accuracy"]):
                        cells.append((spec, g, r["pairwise_accuracy"], r["improvement"]))
        tested = {k: v for k, v in falls.items() if v["n_mixed_prompts"] >= cfg.min_mixed_prompts}
        adjusted = _holm({k: v["p_one_sided"] for k, v in tested.items()})
        for k, p_adj in adjusted.items():
            falls[k]["p_holm"] = round(p_adj, 4)
        significant = {k: falls[k] for k, p_adj in adjusted.items()
                       if p_adj < OVEROPT_ALPHA and falls[k]["rm_correlated_with_correctness"]}
        no_bok = "not tested: no best-of-K data in this run"
        # the smallest p-value a one-sided signed-rank test can give with n prompts is 2^-n: when no tested cell can
        # reach alpha after Holm's factor, the test has no power at this size and the claim is not comparable
        attainable = min((len(tested) * 0.5 ** v["n_mixed_prompts"] for v in tested.values()), default=1.0)
        if falls and attainable >= OVEROPT_ALPHA:
            claims.append(Claim.judged(
                "bok_overoptimisation", "Some reward models over-optimise: their best-of-K accuracy falls as K grows "
                "(the paper sees it on MBPP-Plus)", paper_value="qualitative: BoK falls with K for some RMs",
                measured={"n_cells_tested": len(tested), "smallest_attainable_holm_p": round(attainable, 4),
                          "largest_fall": max(falls.items(), key=lambda kv: kv[1]["fall"])},
                rule=not_comparable(f"too few prompts: with {max((v['n_mixed_prompts'] for v in tested.values()), default=0)}"
                                    f" mixed-label prompts per cell and {len(tested)} cells, even a fall on every prompt "
                                    f"cannot reach family-wise alpha {OVEROPT_ALPHA:g} (Holm-corrected Wilcoxon); "
                                    "run with more problems per level (the default config: 10)"),
                source="[secondary]", evidence={"all_cells": falls}))
        elif not falls:
            claims.append(Claim.judged("bok_overoptimisation", "Some reward models over-optimise: their best-of-K "
                                       "accuracy falls as K grows", paper_value="qualitative", measured=None,
                                       rule=not_comparable(no_bok), source="[secondary]"))
        else:
            claims.append(Claim.judged(
                "bok_overoptimisation", "Some reward models over-optimise: their best-of-K accuracy falls as K grows "
                "(the paper sees it on MBPP-Plus)",
                paper_value="qualitative: BoK falls with K for some RMs",
                measured={"significant_cells": significant, "n_cells": len(falls), "n_cells_tested": len(tested),
                          "n_cells_rm_correlated": sum(v["rm_correlated_with_correctness"] for v in falls.values()),
                          "largest_fall": max(falls.items(), key=lambda kv: kv[1]["fall"])},
                rule=at_least(len(significant), MIN_OVEROPT_CELLS,
                              what=f"(RM, domain) cells with >= {cfg.min_mixed_prompts} prompts that have both correct "
                                   "and incorrect responses, where the RM is correlated with correctness (pairwise "
                                   f"accuracy's 95% bootstrap CI above {MIN_PAIRWISE_CORRELATED:g}) and the per-prompt "
                                   f"fall BoK({k0}) - BoK(K) is above 0 by a one-sided Wilcoxon signed-rank test, "
                                   f"Holm-corrected over the {len(tested)} cells tested (family-wise alpha "
                                   f"{OVEROPT_ALPHA:g})"),
                source="[secondary]", evidence={"all_cells": falls}))
        # (2) correctness metrics agree: pairwise accuracy tracks the best-of-K improvement
        agree_text = ("On verifiable-correctness sets, an RM's pairwise accuracy and its best-of-K improvement over "
                      "the base rank (RM, domain) cells alike: the correctness metrics measure one ability")
        agree_rule = f"Spearman rho >= {MIN_AGREE_RHO:g} over >= {MIN_AGREE_CELLS} (RM, domain) cells"
        if not falls:
            claims.append(Claim.judged("correctness_metrics_agree", agree_text, paper_value="qualitative", measured=None,
                                       rule=not_comparable(no_bok), source="[recollection]"))
        elif len(cells) < MIN_AGREE_CELLS:
            claims.append(Claim.judged(
                "correctness_metrics_agree", agree_text, paper_value="qualitative",
                measured={"n_cells_with_mixed_labels": len(cells)},
                rule=is_true(None, f"{agree_rule}; fewer cells have both correct and incorrect responses, so it cannot "
                                   "be measured"), source="[recollection]"))
        else:
            rho = float(spearmanr([c[2] for c in cells], [c[3] for c in cells]).statistic)
            claims.append(Claim.judged(
                "correctness_metrics_agree", agree_text,
                paper_value="correctness metrics correlate strongly with each other (qualitative)",
                measured={"spearman_accuracy_vs_improvement": round(rho, 4), "n_cells": len(cells)},
                rule=all_of(at_least(rho, MIN_AGREE_RHO, what="Spearman rho over the (RM, domain) cells"),
                            is_true(any(v["rm_correlated_with_correctness"] for v in falls.values()),
                                    "at least one cell's RM is correlated with correctness (pairwise accuracy CI above "
                                    f"{MIN_PAIRWISE_CORRELATED:g}): agreement among scorers that know nothing is not "
                                    "evidence")),
                source="[recollection]",
                evidence={"cells": [{"rm": c[0], "domain": c[1], "pairwise_accuracy": round(c[2], 4),
                                     "improvement": round(c[3], 4)} for c in cells]}))
        hh_acc = {f"{tag}:{spec}": round(r["accuracy"], 4) for tag, t in pref.items() for spec, r in t["rms"].items()}
        agg = {f"{tag}:{spec}": {m: {k: round(v, 4) for k, v in a.items()} for m, a in aggs.items()
                                 if m in ("pairwise_accuracy", "improvement")}
               for tag, t in bok.items() for spec, aggs in t["aggregate"].items()}
        why = ("PPE validates metrics against the post-RLHF Chatbot Arena scores of 9 RMs (DPO on Llama-3.1-8B, "
               "12,190 votes); we train no policy and collect no votes, so there is no downstream outcome to "
               "correlate with")
        claims.append(Claim.judged(
            "preference_accuracy_best_predictor", "Human-preference accuracy is the strongest single predictor of "
            "post-RLHF Arena score", paper_value="qualitative (Pearson with Arena score, N = 9 RMs)",
            measured={"human_preference_accuracy": hh_acc}, rule=not_comparable(f"not tested: {why}"),
            source="[secondary]"))
        claims.append(Claim.judged(
            "low_quantile_aggregation", "Aggregating correctness metrics across domains by a low quantile or the "
            "minimum predicts downstream performance better than the mean or the max",
            paper_value={"peak_pearson": PAPER_PEAK_PEARSON}, measured={"aggregates": agg},
            rule=not_comparable(f"not tested: {why}; the aggregates are reported"), source="[secondary]"))
        claims.append(Claim.judged(
            "rewardbench_negative", "RewardBench scores of the top RMs correlate negatively with downstream performance",
            paper_value="qualitative", measured=None,
            rule=not_comparable(f"not tested: no RewardBench data and {why}"), source="[secondary]"))
        return claims

    # -- figures ----------------------------------------------------------------------------------------
    @staticmethod
    def _figures(out: Path, bok: dict[str, Any], pref: dict[str, Any]) -> list[str]:
        plt = pyplot()
        figures = []
        for tag, t in bok.items():
            groups = [g for g in t["groups"] if g != "all"]
            cols = min(3, len(groups))
            rows = int(np.ceil(len(groups) / cols))
            fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.3 * rows), squeeze=False)
            ks = np.arange(1, t["K"] + 1)
            for ax, g in zip(axes.ravel(), groups):
                row = t["groups"][g]
                first = next(iter(row["rms"].values()))
                ax.plot(ks, first["oracle"], "k--", label="oracle (any correct)")
                ax.axhline(row["base_accuracy"], color="gray", lw=0.8, ls=":", label="base (random pick)")
                for spec, r in row["rms"].items():
                    ax.plot(ks, r["curve"], "o-", ms=3, label=spec)
                ax.set_title(f"{g} (n={row['n_prompts']})", fontsize=9)
                ax.set_xlabel("K")
                ax.set_ylabel("best-of-K accuracy")
                ax.set_ylim(-0.02, 1.02)
            for ax in axes.ravel()[len(groups):]:
                ax.axis("off")
            axes.ravel()[0].legend(fontsize=7)
            figures.append(save_figure(fig, out, f"reward-eval-bok-{_safe(tag)}.png"))
        if pref:
            fig, ax = plt.subplots(figsize=(5.5, 3.4))
            labels, vals, errs = [], [], []
            for tag, t in pref.items():
                for spec, r in t["rms"].items():
                    labels.append(f"{spec}\n{tag}")
                    vals.append(r["accuracy"])
                    lo, hi = r["accuracy_ci"]
                    errs.append([r["accuracy"] - lo, hi - r["accuracy"]])
            x = np.arange(len(vals))
            ax.bar(x, vals, yerr=np.array(errs).T if errs else None, capsize=4, color="#4c72b0")
            ax.axhline(0.5, color="k", ls="--", lw=0.8, label="chance")
            ax.set_xticks(x)
            ax.set_xticklabels(labels, fontsize=7)
            ax.set_ylabel("pairwise accuracy (95% CI)")
            ax.set_ylim(0, 1)
            ax.set_title("human preference accuracy", fontsize=10)
            ax.legend(fontsize=7)
            figures.append(save_figure(fig, out, "reward-eval-preference.png"))
        return figures
