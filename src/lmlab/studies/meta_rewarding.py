"""Meta-Rewarding LMs (Wu et al. 2024, arXiv 2407.19594) on a 135M model: one model is actor, judge (additive
5-point rubric) and meta-judge, and iterative DPO trains acting and judging together.

Per iteration: K responses per prompt, N rubric judgments per response by the model itself (scores parsed and
averaged; unparsed judgments dropped), actor pairs by quality-tier length control (rho schedule 0, 0.32, 0.32,
0.4); for the response whose judgments disagree most, the meta-judge compares every pair of its judgments in both
positions, a position-bias-weighted Elo ranks them, and the best / worst judgment make a judge pair (iterations
1-2 only, as in the paper). Actor and judge pairs go into one DPO dataset (batches mix both kinds).

The paper's first stage (SFT on judge-format data from OpenAssistant rankings, "EFT") is **skipped**: no such data
is bundled and the quick size has no room for it. Prompts are generated problems with exact answers, so the
headline is held-out verifiable accuracy with a CI (the training signal is still the model's own judgment);
the judge's agreement with human preferences is measured on the bundled HH-RLHF harmless-base pairs before and
after, with its parse rate (below 50% parsed, the judge claims are not comparable).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lmlab.config import Config, ConfigError, LMConfig
from lmlab.selfimprove.dpo import DPOSettings
from lmlab.selfimprove.loop import IterationConfig
from lmlab.studies.base import (Claim, Result, Study, all_of, at_least, ci_excludes, greater, not_comparable, pyplot,
                                save_figure)
from lmlab.train.loop import TrainConfig

# paper numbers [secondary] (spec): AlpacaEval-2 LC, Llama-3-8B-Instruct
PAPER_SEED_LC, PAPER_ITER1_LC, PAPER_ITER4_LC = 22.92, 27.85, 39.44
PAPER_HUMAN_AGREEMENT_ITER2 = 66.64  # OpenAssistant test set
PAPER_GPT4_AGREEMENT = (51.79, 61.24)  # SFT -> iteration 3, non-tie pairs
PAPER_FIRST_POSITION, PAPER_HIGHER_SCORE = 0.6811, 0.9768  # meta-judge biases
MIN_WIN_RATE = 0.5
MIN_PARSE_RATE = 0.5  # a self-judge arm below this parse rate is not comparable
BIAS_THRESHOLD = 0.5


@dataclass(frozen=True)
class MetaRewardingConfig(Config):
    seed: int = 0
    lm: LMConfig = field(default_factory=lambda: LMConfig(batch_size=32))
    train: TrainConfig = field(default_factory=lambda: TrainConfig(steps=100_000, lr=5e-6, schedule="cosine",
                                                                   weight_decay=0.0, progress=False))
    # max_length covers a judge pair: the rubric prompt with a response (up to ~950 tokens here) plus a judgment;
    # TRL drops a pair whose prompt alone reaches max_length and cuts longer completions
    dpo: DPOSettings = field(default_factory=lambda: DPOSettings(beta=0.1, epochs=10, batch_size=32, max_length=1536,
                                                                       precompute_ref=True))
    iteration: IterationConfig = field(default_factory=lambda: IterationConfig(
        K=7, temperature=0.8, top_p=0.95, max_new_tokens=512, judge="rubric", judge_n=11, judge_temperature=0.8,
        judge_max_new_tokens=256, selection="tier", rho=0.0, max_chosen_chars=2500))
    iterations: int = 4
    rho_schedule: tuple[float, ...] = (0.0, 0.32, 0.32, 0.4)
    judge_training: tuple[bool, ...] = (True, True, False, False)  # judge pairs in iterations 1-2 only
    meta_max_new_tokens: int = 256
    max_judgment_chars: int = 1100  # drop a judge pair whose chosen judgment is longer
    weighted_elo: bool = True
    n_train: int = 5000
    n_test: int = 200
    n_valid: int = 0
    n_hh: int = 128  # HH-RLHF pairs for the judge's agreement with human preferences
    eval_max_new_tokens: int = 512
    learn: bool = True  # False: the negative control (pairs are built, no DPO step is taken)

    def validate(self) -> None:
        if self.iterations < 1 or self.n_train < 1 or self.n_test < 10:
            raise ConfigError("iterations and n_train must be >= 1 and n_test >= 10")
        if len(self.rho_schedule) < self.iterations or len(self.judge_training) < self.iterations:
            raise ConfigError(f"rho_schedule and judge_training need one entry per iteration ({self.iterations})")
        if not self.iteration.judge == "rubric":
            raise ConfigError("Meta-Rewarding judges with the model itself: iteration.judge must be 'rubric'")
        if self.iteration.judge_n < 2:
            raise ConfigError("iteration.judge_n must be >= 2 (the meta-judge compares judgments of one response)")


class MetaRewardingStudy(Study):
    name = "meta-rewarding"
    title = "Meta-Rewarding: actor, judge and meta-judge trained together by iterative DPO"
    paper = "Wu et al. 2024, Meta-Rewarding Language Models, arXiv 2407.19594"
    config_cls = MetaRewardingConfig
    needs_lm = True
    tiny = ("n_train=2", "n_test=10", "n_hh=0", "iteration.K=2", "iteration.judge_n=2", "iteration.max_new_tokens=8",
            "iteration.judge_max_new_tokens=8", "meta_max_new_tokens=8", "eval_max_new_tokens=8", "dpo.batch_size=4",
            "lm.batch_size=16")

    def quick_config(self) -> MetaRewardingConfig:
        """48 problems, K=4 responses x 3 judgments of <= 96 tokens, 1 iteration (rho 0, actor + judge pairs) of 1 DPO
        epoch, 100 test problems, 32 HH pairs; the SFT/EFT stage skipped."""
        return MetaRewardingConfig(
            train=TrainConfig(steps=100_000, lr=1e-5, weight_decay=0.0, progress=False),
            dpo=DPOSettings(beta=0.1, epochs=1, batch_size=8, max_length=1024),
            iteration=IterationConfig(K=4, max_new_tokens=128, judge="rubric", judge_n=3, judge_temperature=0.8,
                                      judge_max_new_tokens=96, selection="tier", rho=0.0, max_chosen_chars=2500, chunk=8),
            iterations=1, meta_max_new_tokens=96, n_train=48, n_test=100, n_hh=32, eval_max_new_tokens=128)

    def control_config(self, cfg: MetaRewardingConfig) -> MetaRewardingConfig:
        return cfg.replace(learn=False)

    def lm_needs(self, cfg: MetaRewardingConfig) -> tuple[str, ...]:
        return ("trainable",)

    def execute(self, cfg: MetaRewardingConfig, out: Path, quick: bool, resume: bool) -> Result:
        from lmlab.io import atomic_write_json, read_json
        from lmlab.selfimprove.agreement import hh_pairs, judge_agreement
        from lmlab.selfimprove.arms import ArmSpec, heldout, run_arm
        from lmlab.selfimprove.judges import GenConfig
        from lmlab.selfimprove.meta import judge_pairs

        test, valid = heldout(cfg.n_test, cfg.n_valid, cfg.seed)
        hh = hh_pairs(cfg.n_hh, cfg.seed) if cfg.n_hh else None

        def probe(lm: Any, t: int, arm: Path) -> dict[str, Any]:
            if hh is None:
                return {}
            p = arm / f"hh-iter{t}.json"
            if resume and p.exists():
                return dict(read_json(p))  # type: ignore[arg-type]
            res = judge_agreement(lm, hh, GenConfig(n=1, temperature=0.0, max_new_tokens=cfg.iteration.judge_max_new_tokens,
                                                    seed=cfg.seed, parser=cfg.iteration.judge_parser), seed=cfg.seed)
            atomic_write_json(p, res)
            return res

        def extra(t: int) -> Any:
            if not cfg.judge_training[t - 1]:
                return None

            def make(lm: Any, items: Any, samples: Any, scored: Any, parsed: Any, run: Path) -> Any:
                return judge_pairs(lm, items, samples, scored, parsed, run, max_chosen_chars=cfg.max_judgment_chars,
                                   max_new_tokens=cfg.meta_max_new_tokens, weighted=cfg.weighted_elo,
                                   seed=cfg.seed + t, resume=resume, progress=cfg.train.progress)
            return make

        spec = ArmSpec("meta-rewarding", cfg.iteration, cfg.iterations, cfg.n_train,
                       schedule=[{"rho": r} for r in cfg.rho_schedule[:cfg.iterations]], probe=probe, extra_pairs=extra)
        recs = run_arm(spec, cfg.lm, cfg.dpo, cfg.train, test, valid, out, cfg.seed, learn=cfg.learn,
                       eval_max_new_tokens=cfg.eval_max_new_tokens, resume=resume, key=cfg.to_dict(),
                       progress=cfg.train.progress)
        stages = {f"iter{r['iteration']}": r.pop("stage") for r in recs if "stage" in r}
        scale = (f"{cfg.lm.model} model, {cfg.n_train} generated problems x K={cfg.iteration.K} x "
                 f"{cfg.iteration.judge_n} self-judgments per iteration, {cfg.iterations} iteration(s) of "
                 f"{cfg.dpo.epochs} DPO epoch(s), no SFT/EFT stage, {cfg.n_test} held-out problems, {cfg.n_hh} HH-RLHF "
                 "pairs (paper: Llama-3-8B-Instruct, 5,000 prompts x K=7 x N=11, 4 iterations, AlpacaEval 2)")
        claims = self._claims(cfg, recs, scale)
        return Result(claims, metrics={"iterations": recs}, figures=self._figures(out, recs), task_version="meta-rewarding/1",
                      stages=stages)

    @staticmethod
    def _claims(cfg: MetaRewardingConfig, recs: list[dict[str, Any]], scale: str) -> list[Claim]:
        first, last = recs[0], recs[-1]
        trains = [r["train"] for r in recs[1:]]
        parse = [t.get("judge_parse_rate") for t in trains]
        parse_min = min((p for p in parse if p is not None), default=float("nan"))
        claims = [Claim.judged(
            "actor_improves", f"Meta-Rewarding improves the actor over the seed ({cfg.iterations} iteration(s))",
            paper_value={"seed": PAPER_SEED_LC, "iteration_1": PAPER_ITER1_LC, "iteration_4": PAPER_ITER4_LC,
                         "metric": "AlpacaEval-2 LC win %"},
            measured={"accuracy_seed": first["accuracy"], "accuracy_final": last["accuracy"],
                      "accuracy_final_ci": last["accuracy_ci"], "win_rate_vs_seed": last["win_rate_vs_seed"],
                      "win_rate_vs_seed_ci": last["win_rate_vs_seed_ci"], "self_judge_parse_rate": parse},
            rule=ci_excludes(last["win_rate_vs_seed_ci"], MIN_WIN_RATE, "above", what="win rate against the seed"),
            source="[secondary]", scale=scale)]
        hp = [first.get("hh_parse_rate"), last.get("hh_parse_rate")]
        if first.get("hh_accuracy") is None:
            rule = not_comparable("n_hh = 0: no HH-RLHF pairs judged")
        elif not all(p is not None and p >= MIN_PARSE_RATE for p in hp):
            rule = not_comparable(f"the judge's parse rate on HH pairs ({hp}) is below {MIN_PARSE_RATE}")
        else:
            rule = all_of(greater(last["hh_accuracy"], first["hh_accuracy"], what="HH agreement after",
                                  than="before"), at_least(last["hh_accuracy"], 0.5, what="HH agreement after"))
        claims.append(Claim.judged(
            "judge_agreement_improves", "training the judge raises its agreement with human preferences",
            paper_value={"human_agreement_iteration_2": PAPER_HUMAN_AGREEMENT_ITER2, "gpt4_agreement": PAPER_GPT4_AGREEMENT},
            measured={"hh_accuracy_before": first.get("hh_accuracy"), "hh_accuracy_after": last.get("hh_accuracy"),
                      "hh_ci_before": first.get("hh_accuracy_ci"), "hh_ci_after": last.get("hh_accuracy_ci"),
                      "hh_parse_rate": hp},
            rule=rule, source="[secondary]", scale=scale))
        ex = [t.get("extra") or {} for t in trains]
        e1 = ex[0] if ex else {}
        decisive = e1.get("decisive", 0)
        meta_ok = e1.get("meta_parse_rate", 0.0) >= MIN_PARSE_RATE and decisive > 0
        claims.append(Claim.judged(
            "meta_judge_position_bias", "the meta-judge favours the first position",
            paper_value={"first_position_share": PAPER_FIRST_POSITION},
            measured={"first_position_share": e1.get("first_position_rate"), "meta_parse_rate": e1.get("meta_parse_rate"),
                      "verdicts": decisive},
            rule=greater(e1.get("first_position_rate"), BIAS_THRESHOLD, what="first-position share of verdicts")
            if meta_ok else not_comparable(f"meta-judge parse rate {e1.get('meta_parse_rate')} < {MIN_PARSE_RATE} "
                                           "or no verdicts"),
            source="[secondary]", scale=scale, holds_without_training=True,
            holds_reason="a property of the meta-judge at M_t, measured before the DPO step"))
        claims.append(Claim.judged(
            "self_judge_usable", "the model's own rubric judgments parse (the premise of self-rewarding)",
            paper_value="Llama-3-8B-Instruct after EFT: judgments parsed (rate not reported)",
            measured={"parse_rate": parse}, rule=at_least(parse_min, MIN_PARSE_RATE, what="self-judge parse rate"),
            source="[secondary]", scale=scale, holds_without_training=True,
            holds_reason="measured on M_t's judgments, before the DPO step"))
        claims.append(Claim.judged(
            "eft_stage", "SFT on judge-format data (EFT) raises LC from 22.92 to 25.47 before the iterations",
            paper_value={"seed": 22.92, "sft_on_eft": 25.47}, measured=None,
            rule=not_comparable("the SFT/EFT stage is skipped at this size (no OpenAssistant ranking data bundled)"),
            source="[secondary]", scale=scale))
        return claims

    @staticmethod
    def _figures(out: Path, recs: list[dict[str, Any]]) -> list[str]:
        plt = pyplot()
        fig, ax = plt.subplots(1, 3, figsize=(12, 3.6))
        t = [r["iteration"] for r in recs]
        acc = np.array([r["accuracy"] for r in recs])
        ci = np.array([r["accuracy_ci"] for r in recs], float)
        ax[0].errorbar(t, acc, yerr=[acc - ci[:, 0], ci[:, 1] - acc], marker="o", capsize=3)
        ax[0].set(title="held-out verifiable accuracy (95% CI)", xlabel="iteration")
        if "hh_accuracy" in recs[0]:
            h = np.array([r["hh_accuracy"] for r in recs])
            hci = np.array([r["hh_accuracy_ci"] for r in recs], float)
            ax[1].errorbar(t, h, yerr=[h - hci[:, 0], hci[:, 1] - h], marker="o", capsize=3, label="HH agreement")
            ax[1].plot(t, [r["hh_parse_rate"] for r in recs], marker="s", ls="--", label="judge parse rate")
            ax[1].axhline(0.5, color="grey", lw=0.8)
            ax[1].legend(fontsize=7)
        ax[1].set(title="judge on HH-RLHF pairs", xlabel="iteration", ylim=(-0.02, 1.02))
        ax[2].plot(t, [r["response_chars"] for r in recs], marker="o")
        ax[2].set(title="mean response length (characters)", xlabel="iteration")
        for a in ax:
            a.set_xticks(t)
        return [save_figure(fig, out, "meta-rewarding.png")]
