"""The reversal curse through training dynamics (Zhu et al. 2024, arXiv 2405.04669).

What this study does, in order:

1. **Bilinear model** (``lmlab.nn.bilinear``): gradient descent on facts ``A_i -> B_i`` with fixed
   N(0, I/d) embeddings. Measures the forward and reverse NLL over training against log M, the
   centred forward and reverse logits (the weight matrix's asymmetry, read directly), the
   theory's first-order prediction of every reverse logit against its measured value, and how the
   reverse/forward ratio falls with the dimension d (theory: about sqrt(N)/d), with exactly
   orthonormal embeddings as the limit where the reverse logits do not move at all.
2. **Transformers** on the reference code's data (``lmlab.tasks.reversal``): one variant per row of
   ``variants`` (a name plus dotted overrides of the study config, :class:`lmlab.config.Variant`: 1 layer
   with learned, rotary and no positions, 2 layers, and the reversal-augmented mitigation), logging over training the forward accuracy (the trained direction of the held-out
   pairs), the reverse accuracy and NLL, against chance.
3. **Chain**: ``x -> y`` and ``y -> z`` trained, ``x ~> z`` held out; direct answer vs the answer
   through the intermediate step (chain of thought: predict y from ``x ->``, then z from ``y ->``).
4. **In-context control**: the reverse fact is in the context; the model copies it.

Chance, for the reverse direction, is measured among *exchangeable candidates*: the answers of all
held-out sentences with the same relation. Training treats them alike (each appears only in the
other direction), so a model that learnt nothing about the reverse cannot rank the right one above
the others: chance accuracy is 1/n and chance NLL log n. Over the whole 200-token alphabet the
reverse NLL lies far *above* log 200, because the held-out answers never follow that relation in
training and are pushed down; the summary reports both.

The default config runs the quick setting's variants for the reference code's 3,000 epochs
(16k steps at batch 64) with 3 seeds; ``--quick`` runs 1,500 steps. The paper's 24-layer GPT-2
is ``--set model.n_layers=24 --set model.d_model=768 --set model.n_heads=12`` (a GPU job).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lmlab.analysis.curves import first_crossing
from lmlab.config import Config, ConfigError, Variant
from lmlab.nn import TinyConfig, TinyTransformer
from lmlab.nn.bilinear import BilinearRun, train_bilinear
from lmlab.studies.base import (Claim, Result, Rule, Study, all_of, at_least, at_most, between, is_true, pyplot,
                                save_figure, within)
from lmlab.tasks.reversal import FWD, ReversalData, ReversalTask, ReversalTaskConfig, answer_alphabet
from lmlab.train import TrainConfig, train


# Claim thresholds (each rule's words are produced from these by lmlab.claims)
BILINEAR_FORWARD_NLL_MAX = 0.1  # the trained direction is learnt
CHANCE_REL_TOL = 0.05  # a NLL "at chance": within this share of log(number of candidates)
ASYMMETRY_MAX = 0.1  # rms reverse logit / forward logit at d = 256
ORTHO_REVERSE_MAX = 1e-9  # max |reverse logit| with orthonormal embeddings: exactly 0
THEORY_PEARSON_MIN = 0.9  # theory's reverse logits vs measured
SLOPE_RANGE = (-1.25, -0.75)  # log-log slope of the reverse/forward ratio against d (theory: -1)
FORWARD_ACC_MIN = 0.99  # a transformer has learnt the trained facts
CHANCE_SE = 2.0  # accuracy "at chance": within this many standard errors
NLL_FLOOR_SHARE = 0.95  # the reverse NLL never drops below this x log(alphabet)
GAP_RHO_MIN = 0.9  # Spearman(step, reverse NLL - forward NLL)
FIXED_ACC_MIN = 0.95  # reverse training, chain of thought, in-context copy: the answer is reached
# The paper's numbers (the bilinear ones from a small CPU run of the secondary source, d = 256)
PAPER_BILINEAR_FORWARD = "train NLL 5.298 -> 0.051 at step 3000 (a small CPU run, d=256)"
PAPER_BILINEAR_REVERSE = "reverse NLL 5.298 -> 5.391 (log M = 5.298)"
PAPER_NLL_FLOOR = ">= log 200 = 5.30"


@dataclass(frozen=True)
class BilinearConfig(Config):
    """The bilinear model's gradient descent (plain GD from 0 on fixed embeddings, ``lmlab.nn.bilinear``;
    not the lab's training loop, so its steps and lr live here)."""

    n_pairs: int = 100  # M = 2 n_pairs tokens
    d: int = 256
    steps: int = 3000
    lr: float = 1.0
    eval_every: int = 50
    d_sweep: tuple[int, ...] = (16, 32, 64, 128, 256, 512, 1024)

    def validate(self) -> None:
        if self.n_pairs < 2 or self.d < 1 or self.steps < 1 or self.lr <= 0 or self.eval_every < 1:
            raise ConfigError("BilinearConfig: n_pairs >= 2, and d, steps, lr, eval_every must be positive")
        if any(d < 1 for d in self.d_sweep):
            raise ConfigError("BilinearConfig.d_sweep: every dimension must be >= 1")


# The first variant is the main one (repeated over n_seeds); the others are read by their task variant.
VARIANTS = (
    Variant("1l_learned"),
    Variant("1l_rotary", ("model.pos_embed=rotary",)),
    Variant("1l_nopos", ("model.pos_embed=none",)),
    Variant("2l_learned", ("model.n_layers=2",)),
    Variant("1l_reversal_augmented", ("task.augment_reversed=true",)),
    Variant("chain_1l", ("task.variant=chain",)),
    Variant("in_context_1l", ("task.variant=in_context", "whole_sequence=true")),
)


@dataclass(frozen=True)
class ReversalCurseConfig(Config):
    """``seed`` draws the data (1234 is the reference code's) and the initialisation; the main variant
    (the first) is repeated with ``n_seeds`` consecutive seeds and its held-out sentences pooled."""

    seed: int = 1234
    n_seeds: int = 3
    bilinear: BilinearConfig = field(default_factory=BilinearConfig)
    task: ReversalTaskConfig = field(default_factory=ReversalTaskConfig)
    # GPT-2's initialisation (N(0, 0.02)) as in the reference code, which builds on HF GPT2Config.
    model: TinyConfig = field(default_factory=lambda: TinyConfig(n_layers=1, d_model=128, n_heads=4, init="gpt2"))
    train: TrainConfig = field(
        # Cosine decay to 10%: with a constant rate, Adam at near-zero loss can spike late
        # (docs/studies/reversal-curse.md).
        default_factory=lambda: TrainConfig(steps=16_000, lr=1e-3, betas=(0.9, 0.999), weight_decay=0.01,
                                            warmup_steps=50, schedule="cosine", min_lr_ratio=0.1,
                                            eval_every=250, log_every=50, checkpoint_every=1000)
    )
    batch_size: int = 64
    whole_sequence: bool = False  # loss on every token (the in-context control) instead of the last
    variants: tuple[Variant, ...] = VARIANTS

    def validate(self) -> None:
        if self.n_seeds < 1 or self.batch_size < 1:
            raise ConfigError("ReversalCurseConfig.n_seeds and batch_size must be >= 1")
        if not self.variants:
            raise ConfigError("ReversalCurseConfig.variants must list at least one variant")
        if len({v.name for v in self.variants}) != len(self.variants):
            raise ConfigError("ReversalCurseConfig.variants: names must be unique (each is a run directory)")


# ----------------------------------------------------------------------------------------------
# Measurements
# ----------------------------------------------------------------------------------------------
def answer_logprobs(model: TinyTransformer, sentences: np.ndarray) -> torch.Tensor:
    """log p(. | sentence without its last token) at the last position: (n, vocab)."""
    device = next(model.parameters()).device
    x = torch.from_numpy(sentences[:, :-1]).to(device)
    with torch.no_grad():
        return model(x, positions=torch.tensor([x.shape[1] - 1], device=device))[:, -1].float().log_softmax(-1).cpu()


def exchangeable_groups(sentences: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Group held-out sentences by relation; each group's candidates are its distinct answers.

    Returns ``(row indices, sorted candidate tokens)`` per group.
    """
    groups = []
    for rel in np.unique(sentences[:, -2]):
        rows = np.nonzero(sentences[:, -2] == rel)[0]
        groups.append((rows, np.unique(sentences[rows, -1])))
    return groups


def answer_stats(logp: torch.Tensor, data: ReversalData, sentences: np.ndarray) -> dict[str, np.ndarray]:
    """Per sentence: NLL over the vocabulary; correct / NLL / chance among the answer's alphabet and
    among the exchangeable candidates (see the module docstring)."""
    target = torch.from_numpy(sentences[:, -1])
    alphabet = torch.from_numpy(answer_alphabet(data, sentences))
    pick = logp.gather(1, alphabet).argmax(1)
    out = {
        "nll": -logp.gather(1, target[:, None])[:, 0].numpy(),
        "acc_alphabet": (alphabet.gather(1, pick[:, None])[:, 0] == target).float().numpy(),
        "chance_alphabet": np.full(len(sentences), 1 / alphabet.shape[1]),
        "acc_exch": np.zeros(len(sentences)), "nll_exch": np.zeros(len(sentences)), "n_exch": np.zeros(len(sentences)),
    }
    for rows, cands in exchangeable_groups(sentences):
        lp = logp[torch.from_numpy(rows)][:, torch.from_numpy(cands)].log_softmax(-1)
        idx = torch.from_numpy(np.searchsorted(cands, sentences[rows, -1]))
        out["nll_exch"][rows] = -lp.gather(1, idx[:, None])[:, 0].numpy()
        out["acc_exch"][rows] = (lp.argmax(1) == idx).float().numpy()
        out["n_exch"][rows] = len(cands)
    return out


def summarize_stats(s: dict[str, np.ndarray]) -> dict[str, float]:
    """Means, and chance with its standard error (a Poisson-binomial: each sentence has its own 1/n)."""
    p = 1 / s["n_exch"]
    return {
        "acc_exch": float(s["acc_exch"].mean()), "chance_acc_exch": float(p.mean()),
        "se_acc_exch": float(math.sqrt((p * (1 - p)).sum()) / len(p)),
        "nll_exch": float(s["nll_exch"].mean()), "chance_nll_exch": float(np.log(s["n_exch"]).mean()),
        "acc_alphabet": float(s["acc_alphabet"].mean()), "chance_acc_alphabet": float(s["chance_alphabet"].mean()),
        "se_acc_alphabet": float(math.sqrt((s["chance_alphabet"] * (1 - s["chance_alphabet"])).sum()) / len(p)),
        "nll": float(s["nll"].mean()), "n": len(p),
    }


def chain_of_thought_acc(model: TinyTransformer, data: ReversalData) -> float:
    """Held-out ``x ~> z`` answered through the intermediate step: y = argmax p(. | x ->), z = argmax p(. | y ->)."""
    x = data.val[:, 0]
    y_hat = answer_logprobs(model, np.stack([x, np.full_like(x, FWD), x], 1)).argmax(1).numpy()
    z_hat = answer_logprobs(model, np.stack([y_hat, np.full_like(x, FWD), x], 1)).argmax(1).numpy()
    return float((z_hat == data.val[:, 2]).mean())


def eval_variant(model: TinyTransformer, data: ReversalData, variant: str) -> dict[str, Any]:
    """One eval row: forward (trained direction of held-out pairs), all training sentences, held-out."""
    fwd = data.train[data.train_heldout] if data.train_heldout.any() else data.train
    f = answer_stats(answer_logprobs(model, fwd), data, fwd)
    tr = answer_logprobs(model, data.train).argmax(1).numpy() == data.train[:, -1]
    held = summarize_stats(answer_stats(answer_logprobs(model, data.val), data, data.val))
    row = {"forward_acc": float(f["acc_alphabet"].mean()), "forward_nll": float(f["nll"].mean()),
           "train_acc": float(tr.mean()), **{f"val_{k}": val for k, val in held.items()}}
    if data.val_seen is not None:  # reverse training: held-out sentences whose reversed form was trained
        seen = answer_stats(answer_logprobs(model, data.val_seen), data, data.val_seen)
        row["seen_reversed_acc"] = float(seen["acc_alphabet"].mean())
    if variant == "chain":
        row["val_cot_acc"] = chain_of_thought_acc(model, data)
    return row


# ----------------------------------------------------------------------------------------------
# The study
# ----------------------------------------------------------------------------------------------
class ReversalCurseStudy(Study):
    name = "reversal-curse"
    title = "The reversal curse: asymmetric, intransitive learning in a bilinear model and small transformers"
    paper = "Zhu et al., Towards a Theoretical Understanding of the 'Reversal Curse' via Training Dynamics, arXiv 2405.04669"
    config_cls = ReversalCurseConfig

    #: a seconds-scale run for the control test: 20 steps per transformer, one seed, a short bilinear sweep
    tiny = ("n_seeds=1", "train.steps=20", "train.warmup_steps=5", "train.eval_every=10", "train.checkpoint_every=20",
            "bilinear.steps=40", "bilinear.eval_every=20", "bilinear.d_sweep=[16,64,256]")

    def control_config(self, cfg: ReversalCurseConfig) -> ReversalCurseConfig:
        """Learning switched off: every transformer and the bilinear model get learning rate 1e-9."""
        return cfg.replace(train=cfg.train.replace(lr=1e-9), bilinear=cfg.bilinear.replace(lr=1e-9))

    def quick_config(self) -> ReversalCurseConfig:
        """1,500 steps per transformer (about 280 epochs)."""
        base = ReversalCurseConfig()
        return base.replace(train=base.train.replace(steps=1500, eval_every=100, checkpoint_every=500))

    def execute(self, cfg: ReversalCurseConfig, out: Path, quick: bool, resume: bool) -> Result:
        # 1. bilinear model: the main run, the dimension sweep, and orthonormal embeddings
        b = cfg.bilinear
        main = train_bilinear(b.n_pairs, b.d, b.steps, b.lr, cfg.seed, eval_every=b.eval_every)
        sweep = [main if d == b.d else train_bilinear(b.n_pairs, d, b.steps, b.lr, cfg.seed, eval_every=b.steps)
                 for d in b.d_sweep]
        ortho = train_bilinear(b.n_pairs, max(b.d, 2 * b.n_pairs), b.steps, b.lr, cfg.seed, "orthonormal", b.steps)

        # 2-4. transformers; every variant's overrides are checked before anything trains
        variants = {v.name: v.apply(cfg) for v in cfg.variants}
        histories: dict[str, list[dict[str, Any]]] = {}
        pooled: list[dict[str, np.ndarray]] = []
        seconds: dict[str, float] = {}
        sizes: dict[str, int] = {}
        stages: dict[str, Any] = {}
        main_forward: list[float] = []  # the main variant's forward accuracy, per seed
        for i, (vname, vcfg) in enumerate(variants.items()):
            for k in range(cfg.n_seeds if i == 0 else 1):
                seed = cfg.seed + k
                name = vname if k == 0 else f"{vname}_seed{seed}"
                model, data, result = self._train_variant(vcfg, vname, seed, out / name, resume)
                seconds[name] = round(result.seconds, 1)
                stages[name] = result.stage
                if k == 0:
                    histories[vname] = result.evals
                    sizes[vname] = len(data.train)
                if i == 0:
                    pooled.append(answer_stats(answer_logprobs(model, data.val), data, data.val))
                    main_forward.append(result.evals[-1]["forward_acc"])
        main_pooled = summarize_stats({key: np.concatenate([p[key] for p in pooled]) for key in pooled[0]})
        main_pooled["forward_acc_min_over_seeds"] = min(main_forward)

        claims = self._claims(cfg, variants, main, sweep, ortho, histories, main_pooled, sizes)
        figures = self._figures(out, cfg, variants, main, sweep, histories)
        metrics = {
            "bilinear": {"log_M": math.log(2 * b.n_pairs), "final_forward_nll": main.forward_nll[-1],
                         "final_reverse_nll": main.reverse_nll[-1], "forward_logit": main.forward_logit[-1],
                         "reverse_logit_rms": main.reverse_logit_rms[-1],
                         "sweep": [{"d": r.d, "forward_nll": r.forward_nll[-1], "reverse_nll": r.reverse_nll[-1],
                                    "ratio_rms": r.reverse_logit_rms[-1] / r.forward_logit[-1]} for r in sweep],
                         "orthonormal_max_abs_reverse_logit": float(np.abs(ortho.final_reverse_logits).max())},
            "main_pooled_over_seeds": main_pooled,
            "final": {n: h[-1] for n, h in histories.items()},
            "train_seconds": seconds,
            "training_sentences": sizes,
        }
        return Result(claims, metrics, figures, ReversalTask.version, stages=stages)

    @staticmethod
    def _train_variant(cfg: ReversalCurseConfig, name: str, seed: int, run_dir: Path, resume: bool):
        """Train one variant (``cfg``: the study config with the variant's overrides applied)."""
        task = ReversalTask(cfg.task, seed=seed)
        data = task.data()
        model_cfg = cfg.model.replace(d_vocab=data.d_vocab, n_ctx=data.n_ctx)
        torch.manual_seed(seed)
        model = TinyTransformer(model_cfg)
        result = train(
            model, cfg.train.seeded(seed), task.epoch_batches(data, cfg.batch_size, cfg.whole_sequence), run_dir,
            eval_fn=lambda m, step: eval_variant(m, data, cfg.task.variant), resume=resume,
            meta={"task": task.cfg.to_dict(), "task_version": task.version, "model": model_cfg.to_dict(),
                  "batch_size": cfg.batch_size, "variant": name, "whole_sequence": cfg.whole_sequence, "seed": seed},
            code=("lmlab.tasks.reversal", "lmlab.studies.reversal_curse:eval_variant",
                  "lmlab.studies.reversal_curse:answer_stats", "lmlab.studies.reversal_curse:summarize_stats",
                  "lmlab.studies.reversal_curse:answer_logprobs", "lmlab.studies.reversal_curse:chain_of_thought_acc"),
        )
        return model, data, result

    # -- claims ---------------------------------------------------------------------------------
    @staticmethod
    def _claims(cfg: ReversalCurseConfig, variants: dict[str, ReversalCurseConfig], main: BilinearRun,
                sweep: list[BilinearRun], ortho: BilinearRun, h: dict[str, list[dict[str, Any]]],
                pooled: dict[str, float], sizes: dict[str, int]) -> list[Claim]:
        from scipy.stats import linregress, pearsonr, spearmanr

        def at_chance(acc: float, chance: float, se: float, what: str) -> Rule:
            return within(acc, chance, CHANCE_SE * se, what=what)

        log_m = math.log(2 * cfg.bilinear.n_pairs)
        lo, hi = ((1 - CHANCE_REL_TOL) * log_m, (1 + CHANCE_REL_TOL) * log_m)
        # "X does not happen" only means something once the model has learnt: each such claim also needs this
        learnt_bilinear = at_most(main.forward_nll[-1], BILINEAR_FORWARD_NLL_MAX, what="final forward NLL")
        claims = [
            Claim.judged("bilinear_forward", "Bilinear model, gradient descent from 0: the trained direction A -> B is learnt",
                         paper_value=PAPER_BILINEAR_FORWARD,
                         measured={"nll_start": main.forward_nll[0], "nll_end": main.forward_nll[-1]},
                         rule=at_most(main.forward_nll[-1], BILINEAR_FORWARD_NLL_MAX, what="final forward NLL"),
                         source="[abstract] + [secondary] CPU run"),
            Claim.judged("bilinear_reverse_at_chance", "... while the reverse B -> A stays at chance (log M) and never improves",
                         paper_value=PAPER_BILINEAR_REVERSE,
                         measured={"min": min(main.reverse_nll), "end": main.reverse_nll[-1], "log_M": log_m},
                         rule=all_of(learnt_bilinear, is_true(all(lo <= x <= hi for x in main.reverse_nll),
                                      f"reverse NLL within {CHANCE_REL_TOL:.0%} of log M at every eval")),
                         source="[abstract] + [secondary] CPU run",
                         evidence={"epsilon_needed_for_bound": _epsilon_needed(main)}),
        ]
        ratio = main.reverse_logit_rms[-1] / main.forward_logit[-1]
        ortho_max = float(np.abs(ortho.final_reverse_logits).max())
        claims.append(Claim.judged(
            "bilinear_asymmetry", "The learnt weights are asymmetric: raising the A -> B logit leaves B -> A unchanged",
            paper_value="asymmetric (qualitative)",
            measured={"forward_centred_logit": main.forward_logit[-1], "reverse_centred_logit_rms": main.reverse_logit_rms[-1],
                      "ratio": ratio, "orthonormal_max_abs_reverse": ortho_max},
            rule=all_of(learnt_bilinear,
                        at_most(ratio, ASYMMETRY_MAX, what=f"rms reverse logit / forward logit (d={cfg.bilinear.d})"),
                        is_true(ortho_max < ORTHO_REVERSE_MAX,
                                f"max |reverse logit| < {ORTHO_REVERSE_MAX:g} with orthonormal embeddings")),
            source="[abstract]"))
        corr = float(pearsonr(main.predicted_reverse_logits, main.final_reverse_logits).statistic)
        ds = [r.d for r in sweep]
        ratios = [r.reverse_logit_rms[-1] / r.forward_logit[-1] for r in sweep]
        slope = float(linregress(np.log(ds), np.log(ratios)).slope) if len(ds) > 2 else float("nan")
        claims.append(Claim.judged(
            "bilinear_theory_matches", "The theory's first-order reverse logit, f * sum_i <e_Bj,e_Ai><e_Bi,e_Aj>, predicts "
            "the measured reverse logits, and the reverse/forward ratio falls like 1/d",
            paper_value="reverse logit = sum of products of near-zero inner products [secondary]",
            measured={"pearson_pred_vs_measured": round(corr, 4), "loglog_slope_ratio_vs_d": round(slope, 3),
                      "ratio_by_d": dict(zip(ds, [round(r, 5) for r in ratios]))},
            rule=all_of(learnt_bilinear,
                        at_least(corr, THEORY_PEARSON_MIN, what=f"Pearson(theory, measured) at d={cfg.bilinear.d}"),
                        between(slope, *SLOPE_RANGE, what="log-log slope of the ratio vs d")),
            source="[secondary] derivation in lmlab.nn.bilinear"))

        # transformers
        first = cfg.variants[0].name
        f = h[first][-1]
        learnt = at_least(pooled["forward_acc_min_over_seeds"], FORWARD_ACC_MIN,
                          what=f"forward accuracy ({first}, every seed)")
        learnt_first = at_least(f["forward_acc"], FORWARD_ACC_MIN, what=f"forward accuracy ({first})")
        claims.append(Claim.judged(
            "forward_learned", f"A one-layer transformer ({first}) learns every trained fact",
            paper_value="train NLL -> ~0", measured={"forward_acc": f["forward_acc"], "train_acc": f["train_acc"],
                                                     "forward_nll": f["forward_nll"]},
            rule=at_least(f["forward_acc"], FORWARD_ACC_MIN, what="accuracy on the trained direction of held-out pairs"),
            source="[abstract]"))
        p = pooled
        claims.append(Claim.judged(
            "reverse_acc_at_chance", f"... but not the reverse: accuracy on the held-out direction is at chance "
            f"({cfg.n_seeds} seeds pooled, {p['n']} sentences)",
            paper_value="fails (qualitative)",
            measured={"acc": p["acc_exch"], "chance": p["chance_acc_exch"], "se": p["se_acc_exch"],
                      "acc_over_alphabet": p["acc_alphabet"], "chance_over_alphabet": p["chance_acc_alphabet"]},
            rule=all_of(learnt, at_chance(p["acc_exch"], p["chance_acc_exch"], p["se_acc_exch"],
                                  f"accuracy among exchangeable candidates (tolerance {CHANCE_SE:g} SE)"),
                        at_chance(p["acc_alphabet"], p["chance_acc_alphabet"], p["se_acc_alphabet"],
                                  f"accuracy over the {cfg.task.alphabet_size}-token alphabet ({CHANCE_SE:g} SE)")),
            source="[abstract]"))
        rel = p["nll_exch"] / p["chance_nll_exch"] - 1
        claims.append(Claim.judged(
            "reverse_nll_at_chance", "The reverse NLL stays at chance: log(number of candidates)",
            paper_value="validation NLL >= log(#candidates)",
            measured={"nll_exch": p["nll_exch"], "log_n_candidates": p["chance_nll_exch"], "relative": rel},
            rule=all_of(learnt, within(rel, 0.0, CHANCE_REL_TOL, what="NLL among exchangeable candidates / log(n) - 1")),
            source="[recollection]",
            evidence={"nll_full_vocab": p["nll"], "log_alphabet": math.log(cfg.task.alphabet_size),
                      "note": "over the full vocabulary the held-out answers are pushed below the other candidates "
                              "(never seen after this relation), so the NLL is above log(alphabet): at or above chance"}))
        nll_min = min(e["val_nll"] for e in h[first])
        claims.append(Claim.judged(
            "reverse_nll_not_below_chance", "Over the full vocabulary the reverse NLL never drops below log(alphabet)",
            paper_value=PAPER_NLL_FLOOR, measured={"nll_min_over_training": nll_min, "nll_end": f["val_nll"]},
            rule=all_of(learnt_first, at_least(nll_min, NLL_FLOOR_SHARE * math.log(cfg.task.alphabet_size),
                          what=f"min over evals of the reverse NLL ({NLL_FLOOR_SHARE} log(alphabet size))")),
            source="[recollection]"))
        gap = [e["val_nll"] - e["forward_nll"] for e in h[first]]
        rho = float(spearmanr([e["step"] for e in h[first]], gap).statistic)
        claims.append(Claim.judged(
            "gap_grows", "The forward/reverse NLL gap grows with training",
            paper_value="grows monotonically (spec pass criterion)", measured={"spearman_step_vs_gap": round(rho, 3),
                                                                                "gap_start": gap[0], "gap_end": gap[-1]},
            rule=all_of(learnt_first, at_least(rho, GAP_RHO_MIN, what="Spearman(step, reverse NLL - forward NLL)")),
            source="[secondary]"))

        names = list(variants)
        others = [n for n in names[1:] if variants[n].task.variant == "reversal" and not variants[n].task.augment_reversed]
        if others:
            finals = {n: h[n][-1] for n in others}
            ok = all(e["forward_acc"] >= FORWARD_ACC_MIN
                     and at_chance(e["val_acc_exch"], e["val_chance_acc_exch"], e["val_se_acc_exch"], "").ok
                     for e in finals.values())
            claims.append(Claim.judged(
                "curse_across_architectures", "The same failure with rotary / no positional encoding and with 2 layers",
                paper_value="same failure for absolute, rotary, none", source="[recollection]",
                measured={n: {"forward_acc": e["forward_acc"], "reverse_acc": e["val_acc_exch"],
                              "chance": e["val_chance_acc_exch"], "reverse_nll_exch": e["val_nll_exch"],
                              "log_n": e["val_chance_nll_exch"]} for n, e in finals.items()},
                rule=is_true(ok, f"each: forward acc >= {FORWARD_ACC_MIN} and reverse acc within {CHANCE_SE:g} SE "
                                 "of chance")))

        aug = next((n for n in names if variants[n].task.augment_reversed), None)
        if aug is not None:
            a = h[aug]
            cost = {"steps_to_forward_0.99": {n: first_crossing([e["step"] for e in h[n]], [e["forward_acc"] for e in h[n]], FORWARD_ACC_MIN) for n in (first, aug)},
                    "training_sentences": {n: sizes[n] for n in (first, aug)}}
            e = a[-1]
            claims.append(Claim.judged(
                "mitigation_reverse_training", "Training on reversed copies fixes the reverse direction of the facts "
                "whose reversed form is trained, and only those: held-out facts, seen in one direction only, stay at "
                "chance (reverse training adds data; it does not teach the model to reverse)",
                paper_value="reverse training (Golovneva et al.) fixes the facts it reverses (peer); held out: the "
                            "reversal curse (qualitative)",
                measured={"seen_reversed_acc": e["seen_reversed_acc"], "heldout_reverse_acc": e["val_acc_exch"],
                          "heldout_chance": e["val_chance_acc_exch"], "heldout_se": e["val_se_acc_exch"],
                          "heldout_reverse_acc_over_alphabet": e["val_acc_alphabet"], "forward_acc": e["forward_acc"],
                          "final_forward_nll": {n: h[n][-1]["forward_nll"] for n in (first, aug)}, **cost},
                rule=all_of(at_least(e["forward_acc"], FORWARD_ACC_MIN, what="forward accuracy"),
                            at_least(e["seen_reversed_acc"], FIXED_ACC_MIN, what="reverse accuracy, reversed form trained"),
                            at_chance(e["val_acc_exch"], e["val_chance_acc_exch"], e["val_se_acc_exch"],
                                      f"held-out reverse accuracy among exchangeable candidates ({CHANCE_SE:g} SE)")),
                source="peer + [abstract]"))

        chain = next((n for n in names if variants[n].task.variant == "chain"), None)
        if chain is not None:
            c = h[chain][-1]
            claims.append(Claim.judged(
                "chain_needs_cot", "Intransitivity: x -> y and y -> z trained, the held-out x ~> z fails directly but "
                "succeeds through the intermediate step",
                paper_value="fails without CoT, succeeds with it (qualitative)",
                measured={"direct_acc": c["val_acc_exch"], "chance": c["val_chance_acc_exch"], "se": c["val_se_acc_exch"],
                          "cot_acc": c["val_cot_acc"], "train_acc": c["train_acc"]},
                rule=all_of(at_chance(c["val_acc_exch"], c["val_chance_acc_exch"], c["val_se_acc_exch"],
                                      f"direct accuracy among the held-out z's ({CHANCE_SE:g} SE)"),
                            at_least(c["val_cot_acc"], FIXED_ACC_MIN, what="CoT accuracy")),
                source="[abstract]"))

        icl = next((n for n in names if variants[n].task.variant == "in_context"), None)
        if icl is not None:
            c = h[icl][-1]
            claims.append(Claim.judged(
                "in_context_control", "With the forward fact in the context, the reverse is answered (copied)",
                paper_value="near-perfect validation", measured={"val_acc": c["val_acc_alphabet"]},
                rule=at_least(c["val_acc_alphabet"], FIXED_ACC_MIN, what="held-out reverse accuracy"),
                source="[recollection]"))
        return claims

    # -- figures --------------------------------------------------------------------------------
    @staticmethod
    def _figures(out: Path, cfg: ReversalCurseConfig, variants: dict[str, ReversalCurseConfig], main: BilinearRun,
                 sweep: list[BilinearRun], h: dict[str, list[dict[str, Any]]]) -> list[str]:
        plt = pyplot()
        log_m = math.log(2 * cfg.bilinear.n_pairs)
        names = []

        fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
        ax = axes[0]
        ax.plot(main.steps, main.forward_nll, label="forward A -> B (trained)")
        ax.plot(main.steps, main.reverse_nll, label="reverse B -> A")
        ax.axhline(log_m, color="gray", ls="--", label=f"log M = {log_m:.2f}")
        ax.set(xlabel="gradient step", ylabel="NLL", title=f"Bilinear model, d={main.d}: NLL")
        ax.legend()
        ax = axes[1]
        ax.plot(main.steps, main.forward_logit, label="forward logit (centred)")
        ax.plot(main.steps, main.reverse_logit, label="reverse logit, mean")
        ax.plot(main.steps, main.reverse_logit_rms, label="reverse logit, rms")
        ax.set(xlabel="gradient step", ylabel="logit", title="Asymmetry: e_A Θ e_B rises, e_B Θ e_A does not")
        ax.legend()
        ax = axes[2]
        pred, meas = np.array(main.predicted_reverse_logits), np.array(main.final_reverse_logits)
        ax.scatter(pred, meas, s=10)
        lim = float(max(np.abs(pred).max(), np.abs(meas).max())) * 1.1
        ax.plot([-lim, lim], [-lim, lim], color="gray", ls="--", label="y = x")
        ax.set(xlabel="theory: f Σ_i <e_Bj,e_Ai><e_Bi,e_Aj>", ylabel="measured reverse logit (centred)",
               title="Reverse logit per fact: theory vs measured")
        ax.legend()
        names.append(save_figure(fig, out, "bilinear.png"))

        fig, ax = plt.subplots(figsize=(6, 4.5))
        ds = np.array([r.d for r in sweep])
        ax.loglog(ds, [r.reverse_logit_rms[-1] / r.forward_logit[-1] for r in sweep], "o-", label="measured")
        ax.loglog(ds, math.sqrt(cfg.bilinear.n_pairs) / ds, "--", color="gray", label="theory scale √N / d")
        ax.set(xlabel="embedding dimension d", ylabel="rms reverse logit / forward logit",
               title=f"Bilinear model after {cfg.bilinear.steps} steps")
        ax.legend()
        names.append(save_figure(fig, out, "bilinear_dimension.png"))

        reversal = [n for n, vc in variants.items() if vc.task.variant == "reversal"]
        fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
        for n in reversal:
            steps = [e["step"] for e in h[n]]
            line, = axes[0].plot(steps, [e["forward_acc"] for e in h[n]], label=n)
            axes[0].plot(steps, [e["val_acc_exch"] for e in h[n]], ls=":", color=line.get_color())
            axes[1].plot(steps, [e["val_nll_exch"] for e in h[n]], label=n, color=line.get_color())
            axes[2].plot(steps, [e["val_nll"] for e in h[n]], label=n, color=line.get_color())
        first = h[reversal[0]][-1]
        axes[0].axhline(first["val_chance_acc_exch"], color="gray", ls="--", label="reverse chance")
        axes[0].set(xlabel="step", ylabel="accuracy", title="Forward (solid) vs reverse (dotted) accuracy")
        axes[1].axhline(first["val_chance_nll_exch"], color="gray", ls="--", label="log(#candidates)")
        axes[1].set(xlabel="step", ylabel="NLL", title="Reverse NLL among exchangeable candidates")
        axes[2].axhline(math.log(cfg.task.alphabet_size), color="gray", ls="--", label="log 200")
        axes[2].set(xlabel="step", ylabel="NLL", title="Reverse NLL over the whole vocabulary")
        for ax in axes:
            ax.legend(fontsize=7)
        names.append(save_figure(fig, out, "transformer_reversal.png"))

        bars = []  # (label, accuracy, True if the answer was trained or in reach: CoT, in context, augmented)
        for n, vc in variants.items():
            e = h[n][-1]
            if vc.task.variant == "reversal":
                bars.append((f"{n}\nforward", e["forward_acc"], True))
                if vc.task.augment_reversed:
                    bars.append((f"{n}\nreverse, reversal trained", e["seen_reversed_acc"], True))
                bars.append((f"{n}\nreverse{', held out' if vc.task.augment_reversed else ''}", e["val_acc_alphabet"],
                             False))
            elif vc.task.variant == "chain":
                bars.append(("chain\nx~>z direct", e["val_acc_alphabet"], False))
                bars.append(("chain\nvia y (CoT)", e["val_cot_acc"], True))
            else:
                bars.append(("in-context\nreverse", e["val_acc_alphabet"], True))
        fig, ax = plt.subplots(figsize=(max(8, 1.1 * len(bars)), 4.5))
        ax.bar(range(len(bars)), [b[1] for b in bars], color=["tab:blue" if b[2] else "tab:red" for b in bars])
        for i, b in enumerate(bars):
            ax.text(i, b[1] + 0.01, f"{b[1]:.2f}", ha="center", fontsize=7)
        ax.set_xticks(range(len(bars)), [b[0] for b in bars], fontsize=7, rotation=30, ha="right")
        ax.set(ylabel="accuracy (argmax over the answer's alphabet)", ylim=(0, 1.1),
               title="Final accuracy: trained or in reach (blue) vs held out, no help (red)")
        names.append(save_figure(fig, out, "summary_bars.png"))
        return names


def _epsilon_needed(run: BilinearRun) -> float:
    """Smallest eps with L_rev(t)/L_rev(0) >= (L(t)/L(0))^eps at every eval (the theory's bound); <= 0 when
    the reverse loss never falls."""
    eps = -math.inf
    for f, r in zip(run.forward_nll[1:], run.reverse_nll[1:]):
        if f < run.forward_nll[0]:
            eps = max(eps, math.log(r / run.reverse_nll[0]) / math.log(f / run.forward_nll[0]))
    return eps
