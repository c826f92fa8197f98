"""Extreme-token phenomena on Bigram-Backcopy (Guo et al. 2024, arXiv 2410.13835).

Attention sinks (queries put their attention on BOS), value-state drains (BOS's value is tiny) and
residual-state peaks (BOS's residual norm is huge) appear in 1-3 layer transformers trained on the
Bigram-Backcopy task (``lmlab.tasks.bigram_backcopy``). The head is *active* at trigger tokens,
where it attends to the previous token to copy it, and *dormant* elsewhere, where it parks its
attention on BOS, whose value has been driven to a no-op (mutual reinforcement: the sink grows as
the BOS value shrinks).

This study trains one model per variant, side by side (a variant is a name plus dotted overrides of the
``model`` and ``train`` sections, :class:`lmlab.config.Variant`):

=================  ======  ==========  =========  ==============================================
variant            layers  attention   optimizer  what it shows
=================  ======  ==========  =========  ==============================================
softmax_adam_1l    1       softmax     AdamW      sink, value drain, active-dormant switch
relu_adam_1l       1       ReLU        AdamW      mitigation: no sink at the same loss
softmax_adam_3l    3       softmax     AdamW      residual-state peak
softmax_sgd_3l     3       softmax     SGD+mom.   mitigation: a smaller residual peak
=================  ======  ==========  =========  ==============================================

and measures over training, per layer: attention on BOS from non-trigger and from trigger queries,
``||W_O v||`` of BOS against the median token (value drain), the residual norm of BOS against the
median token (peak), and the bigram and backcopy losses separately. The metrics are the reusable
functions of ``lmlab.analysis.extreme_tokens``.

The default config is the paper's (d_model 256, sequences of 256, batch 512, 10k steps: a GPU
job); ``--quick`` uses d_model 64, sequences of 64, batch 64 and 2k-2.5k steps per variant.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from lmlab.analysis.extreme_tokens import head_outputs, norm_ratio, sink_share, token_norms
from lmlab.config import Config, ConfigError, Variant
from lmlab.nn import TinyConfig, TinyTransformer
from lmlab.studies.base import (Claim, Result, Study, all_of, at_least, at_most, greater, is_true, not_comparable,
                                pyplot, save_figure, within)
from lmlab.tasks.bigram_backcopy import BigramBackcopyConfig, BigramBackcopyTask
from lmlab.train import TrainConfig, train


def _variant(name: str, n_layers: int, attn_act: str, optimizer: str, lr: float, momentum: float,
             steps: int) -> Variant:
    return Variant(name, (f"model.n_layers={n_layers}", f"model.attn_act={attn_act}", f"train.optimizer={optimizer}",
                          f"train.lr={lr!r}", f"train.momentum={momentum!r}", f"train.steps={steps}"))


PAPER_VARIANTS = (
    _variant("softmax_adam_1l", 1, "softmax", "adamw", 3e-4, 0.0, 10_000),
    _variant("relu_adam_1l", 1, "relu", "adamw", 3e-3, 0.0, 100_000),
    _variant("softmax_adam_3l", 3, "softmax", "adamw", 3e-4, 0.0, 10_000),
    _variant("softmax_sgd_3l", 3, "softmax", "sgd", 0.03, 0.9, 10_000),
)
REQUIRED = {"softmax_adam_1l", "relu_adam_1l", "softmax_adam_3l", "softmax_sgd_3l"}

# Claim thresholds (each rule's words are produced from these by lmlab.claims)
SINK_MIN = 0.9  # BOS share of non-trigger queries: a sink
TRIGGER_SINK_MAX = 0.2  # BOS share of trigger queries: the head is active there
VALUE_RATIO_MAX = 0.2  # ||W_O v_BOS|| / median token's: drained (at least 5x smaller)
BACKCOPY_MAX = 0.05  # backcopy CE: solved
ORACLE_SLACK = 0.05  # bigram CE <= oracle + this
REINFORCE_RHO_MAX = -0.5  # Spearman(sink, ||W_O v_BOS||) after the value peak
VALUE_FALL_SHARE = 0.5  # ||W_O v_BOS|| ends below this share of its peak
RELU_SINK_MAX = 0.3  # the ReLU model's BOS share stays below this (strict)
LOSS_MATCH_TOL = 0.05  # |loss(ReLU) - loss(softmax)|
PEAK_MIN_RATIO = 2.0  # BOS residual norm / median token's: a residual peak
# The paper's numbers (with the small CPU run of the secondary source where the paper gives none)
PAPER_SINK = ">= 0.9 (a small CPU run: 0.986)"
PAPER_TRIGGER_SINK = "~0 (a small CPU run: 0.000)"
PAPER_VALUE_DRAIN = "~12x smaller (a small CPU run: 1.27 vs 15.0)"
PAPER_TASK = {"backcopy": 5.5e-6, "bigram_vs_oracle": "2.2299 (tiny-Shakespeare)"}
PAPER_RELU = {"sink": "none", "bigram": 2.2284}
PAPER_PEAK = "BOS residual-norm excess 106.1 (d=256, 10k steps)"


@dataclass(frozen=True)
class ExtremeTokensConfig(Config):
    """The paper's setting. Each variant overrides ``model`` and ``train`` (layers, attention, optimizer, lr,
    momentum, steps); ``seed`` seeds the data, the initialisation and, unless ``train.seed`` is set, training."""

    seed: int = 42
    task: BigramBackcopyConfig = field(default_factory=BigramBackcopyConfig)
    # As in the paper's code: no biases in the linear maps, but nn.LayerNorm's default bias (ln_bias); without
    # the LN bias the 1-layer sink grows much more slowly (docs/studies/extreme-tokens.md).
    model: TinyConfig = field(default_factory=lambda: TinyConfig(d_model=256, n_heads=1, act_fn="relu", bias=False,
                                                                 ln_bias=True))
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        steps=10_000, optimizer="adamw", lr=3e-4, betas=(0.9, 0.99), weight_decay=1e-4, eval_every=250, log_every=10,
        checkpoint_every=250))
    variants: tuple[Variant, ...] = PAPER_VARIANTS
    batch_size: int = 512
    eval_size: int = 64
    # Caps every variant's train.steps (a variant's own keys win over --set; null: no cap). For tiny test runs.
    max_steps: int | None = None

    def validate(self) -> None:
        names = [v.name for v in self.variants]
        if len(set(names)) != len(names):
            raise ConfigError("ExtremeTokensConfig.variants: names must be unique")
        missing = REQUIRED - set(names)
        if missing:
            raise ConfigError(f"ExtremeTokensConfig.variants: missing {sorted(missing)}; the claims compare these four")
        if self.max_steps is not None and self.max_steps < 1:
            raise ConfigError(f"ExtremeTokensConfig.max_steps must be >= 1 or null, got {self.max_steps}")


def bb_metrics(model: TinyTransformer, task: BigramBackcopyTask, x: np.ndarray) -> dict[str, Any]:
    """Losses and extreme-token metrics of ``model`` on sequences ``x`` (BOS at position 0)."""
    device = next(model.parameters()).device
    batch = task.to_batch(x)
    L = model.cfg.n_layers
    names = [f"blocks.{i}.attn.hook_{n}" for i in range(L) for n in ("pattern", "v")]
    names += [f"blocks.{i}.hook_resid_post" for i in range(L)]
    with model.record(names) as cache:
        logits = model(batch.tokens.to(device))
    ce = F.cross_entropy(logits.flatten(0, 1).float(), batch.targets.to(device).flatten(), reduction="none")
    ce = ce.view(batch.targets.shape).cpu()
    trig = torch.from_numpy(task.trigger_mask(x))
    out: dict[str, Any] = {
        "loss": ce.mean().item(),
        "bigram_loss": ce[~trig].mean().item(),
        "backcopy_loss": ce[trig].mean().item() if trig.any() else None,
    }
    per_layer: dict[str, list[float]] = {k: [] for k in (
        "sink_nontrigger", "sink_trigger", "value_out_ratio", "bos_value_out_norm", "resid_ratio", "bos_resid_norm")}
    for i in range(L):
        pattern = cache[f"blocks.{i}.attn.hook_pattern"].float().cpu()
        values = head_outputs(cache[f"blocks.{i}.attn.hook_v"].float(), model.blocks[i].attn.W_O.detach().float()).cpu()
        resid = cache[f"blocks.{i}.hook_resid_post"].float().cpu()
        per_layer["sink_nontrigger"].append(sink_share(pattern, ~trig).max().item())
        per_layer["sink_trigger"].append(sink_share(pattern, trig).max().item())
        per_layer["value_out_ratio"].append(norm_ratio(values).item())
        per_layer["bos_value_out_norm"].append(token_norms(values)[:, 0].mean().item())
        per_layer["resid_ratio"].append(norm_ratio(resid).item())
        per_layer["bos_resid_norm"].append(token_norms(resid)[:, 0].mean().item())
    out.update({k: [round(v, 5) for v in vals] for k, vals in per_layer.items()})
    out["attn_example"] = np.round(cache["blocks.0.attn.hook_pattern"][0, 0, :32, :32].float().cpu().numpy(), 3).tolist()
    return out


def sink_by_token(model: TinyTransformer, task: BigramBackcopyTask, x: np.ndarray, layer: int = 0,
                  min_count: int = 30) -> dict[str, float]:
    """Mean BOS attention of non-trigger queries, per query character (those seen >= min_count times)."""
    batch = task.to_batch(x)
    with torch.no_grad(), model.record(f"blocks.{layer}.attn.hook_pattern") as cache:
        model(batch.tokens.to(next(model.parameters()).device))
    to_bos = cache[f"blocks.{layer}.attn.hook_pattern"][:, :, :, 0].max(dim=1).values.cpu()  # strongest head
    tokens = batch.tokens
    nontrig = torch.from_numpy(~task.trigger_mask(x))
    nontrig[:, 0] = False
    out = {}
    for t in range(len(task.vocab)):
        sel = (tokens == t) & nontrig
        if int(sel.sum()) >= min_count:
            out[task.vocab[t]] = round(to_bos[sel].mean().item(), 3)
    return out


class ExtremeTokensStudy(Study):
    name = "extreme-tokens"
    title = "Extreme-token phenomena on Bigram-Backcopy: sinks, value drains, residual peaks, mitigations"
    paper = "Guo et al., Active-Dormant Attention Heads, arXiv 2410.13835"
    config_cls = ExtremeTokensConfig

    #: a seconds-scale run for the control test: d_model 16, sequences of 16, 10 steps per variant
    tiny = ("model.d_model=16", "task.seq_len=16", "batch_size=8", "eval_size=16", "max_steps=10",
            "train.eval_every=5", "train.checkpoint_every=10")

    def control_config(self, cfg: ExtremeTokensConfig) -> ExtremeTokensConfig:
        """Learning switched off: every variant gets learning rate 1e-9 (its own lr key is overridden)."""
        return cfg.replace(variants=tuple(Variant(v.name, tuple(v.overrides) + ("train.lr=1e-09",))
                                          for v in cfg.variants))

    def quick_config(self) -> ExtremeTokensConfig:
        """d_model 64, sequences of 64, batch 64; AdamW at 3e-3 for 2k steps (1 layer), at 1e-3 for 2.5k steps
        (3 layers); SGD 0.03 with momentum 0.9 for 2.5k steps (why these rates: docs/studies/extreme-tokens.md)."""
        base = ExtremeTokensConfig()
        return base.replace(
            task=base.task.replace(seq_len=64),
            model=base.model.replace(d_model=64),
            train=base.train.replace(eval_every=100),
            variants=(
                _variant("softmax_adam_1l", 1, "softmax", "adamw", 3e-3, 0.0, 2000),
                _variant("relu_adam_1l", 1, "relu", "adamw", 3e-3, 0.0, 2000),
                _variant("softmax_adam_3l", 3, "softmax", "adamw", 1e-3, 0.0, 2500),
                _variant("softmax_sgd_3l", 3, "softmax", "sgd", 0.03, 0.9, 2500),
            ),
            batch_size=64,
        )

    def execute(self, cfg: ExtremeTokensConfig, out: Path, quick: bool, resume: bool) -> Result:
        task = BigramBackcopyTask(cfg.task, seed=cfg.seed)
        x_eval = task.eval_sample(cfg.eval_size)
        oracle = task.oracle_bigram_ce(x_eval)
        variants = [(v, v.apply(cfg)) for v in cfg.variants]  # every variant's overrides checked before training
        if cfg.max_steps is not None:
            variants = [(v, c.replace(train=c.train.replace(steps=min(c.train.steps, cfg.max_steps))))
                        for v, c in variants]
        histories: dict[str, list[dict[str, Any]]] = {}
        seconds, by_token, stages = {}, {}, {}
        for v, vcfg in variants:
            model_cfg = vcfg.model.replace(d_vocab=task.d_vocab, n_ctx=task.n_ctx)
            torch.manual_seed(cfg.seed)
            model = TinyTransformer(model_cfg)
            result = train(
                model, vcfg.train.seeded(cfg.seed), lambda step: task.batch(step, cfg.batch_size), out / v.name,
                eval_fn=lambda m, step: bb_metrics(m, task, x_eval), resume=resume,
                meta={"task": cfg.task.to_dict(), "task_version": task.version, "model": model_cfg.to_dict(),
                      "batch_size": cfg.batch_size, "variant": v.to_dict()},
                code=("lmlab.tasks.bigram_backcopy", "lmlab.analysis.extreme_tokens", "lmlab.studies.extreme_tokens:bb_metrics"),
            )
            stages[v.name] = result.stage
            histories[v.name] = result.evals
            seconds[v.name] = round(result.seconds, 1)
            layer = _sink_layer(result.evals[-1])
            by_token[v.name] = {"layer": layer, "bos_share": sink_by_token(model, task, x_eval, layer)}

        finals = {name: h[-1] for name, h in histories.items()}
        claims = self._claims(histories, oracle)
        claims[0].evidence["bos_share_by_query_char"] = by_token["softmax_adam_1l"]["bos_share"]
        figures = self._figures(out, histories, task, x_eval)
        metrics = {
            "oracle_bigram_ce": oracle,
            "triggers": [task.vocab[i] for i in task.triggers],
            "trigger_fraction": float(task.trigger_mask(x_eval).mean()),
            "final": {n: {k: f[k] for k in f if k != "attn_example"} for n, f in finals.items()},
            "train_seconds": seconds,
            "sink_by_query_char": by_token,
        }
        return Result(claims, metrics, figures, task.version, stages=stages)

    @staticmethod
    def _claims(h: dict[str, list[dict[str, Any]]], oracle: float) -> list[Claim]:
        from scipy.stats import spearmanr

        s1, r1, s3, g3 = (h[n][-1] for n in ("softmax_adam_1l", "relu_adam_1l", "softmax_adam_3l", "softmax_sgd_3l"))
        claims = [
            Claim.judged("attention_sink", "A 1-layer softmax transformer trained with Adam on BB puts almost all "
                         "attention of non-trigger queries on BOS (the head is dormant there)",
                         paper_value=PAPER_SINK, measured=s1["sink_nontrigger"][0],
                         rule=at_least(s1["sink_nontrigger"][0], SINK_MIN, what="BOS share of non-trigger queries"),
                         source="[abstract] + [secondary] CPU run"),
            # "active at triggers" is the switch of a head that is dormant elsewhere: without the sink (an untrained
            # head attends nearly uniformly, so little goes to BOS from any query) there is nothing to switch from.
            Claim.judged("active_on_triggers", "At trigger tokens the same head is active: it attends away from BOS "
                         "(to the token to copy), while dormant (sinking) at the other tokens",
                         paper_value=PAPER_TRIGGER_SINK, measured=s1["sink_trigger"][0],
                         rule=all_of(at_most(s1["sink_trigger"][0], TRIGGER_SINK_MAX, what="BOS share of trigger queries"),
                                     at_least(s1["sink_nontrigger"][0], SINK_MIN, what="BOS share of non-trigger queries")),
                         source="[abstract] + [secondary] CPU run"),
            Claim.judged("value_drain", "BOS's value state is drained: ||W_O v_BOS|| far below the other tokens'",
                         paper_value=PAPER_VALUE_DRAIN, measured=s1["value_out_ratio"][0],
                         rule=at_most(s1["value_out_ratio"][0], VALUE_RATIO_MAX, what="||W_O v_BOS|| / median token's"),
                         source="[abstract] + [secondary] CPU run"),
            _sink_claim_3l(s3),
            Claim.judged("task_solved", "The model solves BB: backcopy loss near 0, bigram loss at the oracle",
                         paper_value=PAPER_TASK,
                         measured={"backcopy": s1["backcopy_loss"], "bigram": s1["bigram_loss"], "oracle": round(oracle, 4)},
                         rule=all_of(at_most(s1["backcopy_loss"], BACKCOPY_MAX, what="backcopy CE"),
                                     at_most(s1["bigram_loss"], oracle + ORACLE_SLACK,
                                             what=f"bigram CE (oracle + {ORACLE_SLACK})")),
                         source="[code] notebook"),
        ]
        # Mutual reinforcement is a claim about the drain phase: from init every norm first grows, then the
        # BOS value falls while the sink rises. So we read the curves from the peak of ||W_O v_BOS|| on.
        sink_curve = [e["sink_nontrigger"][0] for e in h["softmax_adam_1l"]]
        value_curve = [e["bos_value_out_norm"][0] for e in h["softmax_adam_1l"]]
        peak = int(np.argmax(value_curve))
        sink_after, value_after = sink_curve[peak:], value_curve[peak:]
        rho = float(spearmanr(sink_after, value_after).statistic) if len(sink_after) > 2 else float("nan")
        claims.append(Claim.judged(
            "mutual_reinforcement", "Over training the sink grows while the BOS value norm falls (mutual reinforcement)",
            paper_value="sink up, ||v_BOS|| down",
            measured={"spearman_sink_vs_bos_value_after_peak": round(rho, 3),
                      "bos_value_peak_step": h["softmax_adam_1l"][peak]["step"],
                      "sink_peak_to_end": [sink_after[0], sink_after[-1]],
                      "bos_value_peak_to_end": [value_after[0], value_after[-1]]},
            rule=all_of(at_most(rho, REINFORCE_RHO_MAX, what="from the ||W_O v_BOS|| peak on: Spearman(sink, ||W_O v_BOS||)"),
                        greater(sink_after[-1], sink_after[0], what="final sink", than="the sink at the value peak"),
                        at_most(value_after[-1], VALUE_FALL_SHARE * value_after[0],
                                what=f"final ||W_O v_BOS|| ({VALUE_FALL_SHARE} x its peak)")),
            source="[abstract]"))
        claims.append(Claim.judged(
            "relu_removes_sink", "ReLU attention removes the sink at a comparable loss",
            paper_value=PAPER_RELU,
            measured={"relu_sink": r1["sink_nontrigger"][0], "relu_loss": r1["loss"], "softmax_loss": s1["loss"],
                      "softmax_sink": s1["sink_nontrigger"][0]},
            rule=all_of(is_true(r1["sink_nontrigger"][0] < RELU_SINK_MAX, f"ReLU model's BOS share < {RELU_SINK_MAX}"),
                        within(r1["loss"], s1["loss"], LOSS_MATCH_TOL, what="loss(ReLU)"),
                        at_least(s1["sink_nontrigger"][0], SINK_MIN, what="the softmax model's BOS share (a sink to remove)")),
            source="[abstract] + [code]"))
        peak_adam, peak_sgd = max(s3["resid_ratio"]), max(g3["resid_ratio"])
        claims.append(Claim.judged(
            "residual_peak", "A 3-layer softmax transformer trained with Adam develops a residual-state peak at BOS",
            paper_value=PAPER_PEAK,
            measured={"max_layer_resid_ratio": round(peak_adam, 3), "per_layer": s3["resid_ratio"]},
            rule=at_least(peak_adam, PEAK_MIN_RATIO, what="BOS residual norm / median token's, in some layer"),
            source="[code] notebook"))
        sgd_rule = greater(peak_adam, peak_sgd, what="max-layer BOS residual ratio with Adam", than="with SGD")
        claims.append(Claim.judged(
            "sgd_weakens_peak", "Training with SGD instead of Adam gives a smaller BOS residual peak",
            paper_value="SGD removes the peak (qualitative)",
            measured={"adam": round(peak_adam, 3), "sgd": round(peak_sgd, 3), "sgd_loss": g3["loss"],
                      "adam_loss": s3["loss"]},
            rule=sgd_rule if peak_adam >= PEAK_MIN_RATIO else not_comparable(
                f"{sgd_rule.tolerance}; judged only if Adam has a peak (ratio >= {PEAK_MIN_RATIO})"),
            source="[abstract]"))
        return claims

    @staticmethod
    def _figures(out: Path, h: dict[str, list[dict[str, Any]]], task: BigramBackcopyTask, x: np.ndarray) -> list[str]:
        plt = pyplot()

        trig = task.trigger_mask(x)[0, :32]
        fig, axes = plt.subplots(1, 2, figsize=(12, 5.5))
        for ax, name in zip(axes, ("softmax_adam_1l", "relu_adam_1l")):
            ax.imshow(np.array(h[name][-1]["attn_example"]), cmap="viridis", vmin=0, vmax=1)
            for q in np.nonzero(trig)[0]:
                ax.annotate("T", (-1.2, q), color="red", fontsize=7, va="center", annotation_clip=False)
            ax.set_title(f"{name}: layer-0 attention (T = trigger query)")
            ax.set_xlabel("key (0 = BOS)")
            ax.set_ylabel("query")
        save_figure(fig, out, "attention_maps.png")

        keys = [("sink_nontrigger", "BOS share, non-trigger queries (sink layer)"),
                ("sink_trigger", "BOS share, trigger queries (sink layer)"),
                ("value_out_ratio", "||W_O v_BOS|| / median (sink layer)"), ("resid_ratio", "BOS residual norm / median (max layer)"),
                ("bigram_loss", "bigram loss"), ("backcopy_loss", "backcopy loss")]
        fig, axes = plt.subplots(2, 3, figsize=(15, 8))
        for ax, (key, title) in zip(axes.ravel(), keys):
            for name, evals in h.items():
                steps = [e["step"] for e in evals]
                layer = _sink_layer(evals[-1])
                vals = [(max(e[key]) if key == "resid_ratio" else e[key][layer]) if isinstance(e[key], list) else e[key]
                        for e in evals]
                ax.plot(steps, vals, label=name)
            if key in ("resid_ratio", "value_out_ratio", "backcopy_loss"):
                ax.set_yscale("log")
            ax.set_title(title)
            ax.set_xlabel("step")
        axes[0, 0].legend(fontsize=8)
        save_figure(fig, out, "dynamics.png")

        names = list(h)
        fig, axes = plt.subplots(1, 4, figsize=(16, 4))
        for ax, (key, title) in zip(axes, [("sink_nontrigger", "BOS attention share"),
                                           ("value_out_ratio", "value drain ratio"),
                                           ("resid_ratio", "residual peak ratio (max layer)"), ("loss", "loss")]):
            layers = [_sink_layer(h[n][-1]) for n in names]
            vals = [max(h[n][-1][key]) if key == "resid_ratio" else
                    (h[n][-1][key][lay] if isinstance(h[n][-1][key], list) else h[n][-1][key])
                    for n, lay in zip(names, layers)]
            ax.bar(range(len(names)), vals, color=[f"C{i}" for i in range(len(names))])
            ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
            ax.set_title(title)
        save_figure(fig, out, "mitigations.png")
        return ["attention_maps.png", "dynamics.png", "mitigations.png"]


def _sink_layer(row: dict[str, Any]) -> int:
    """The layer with the strongest sink (largest non-trigger BOS share) in an eval row."""
    return int(np.argmax(row["sink_nontrigger"]))


def _sink_claim_3l(final: dict[str, Any]) -> Claim:
    """The same three measurements in the 3-layer softmax+Adam model, at its sink layer (the layer with the
    largest non-trigger BOS share): the paper finds the phenomena in 1- to 3-layer models."""
    layer = _sink_layer(final)
    sink, trig, value = (final[k][layer] for k in ("sink_nontrigger", "sink_trigger", "value_out_ratio"))
    return Claim.judged(
        "attention_sink_3l", "The 3-layer softmax+Adam model has the same active-dormant head: at its sink layer "
        "non-trigger queries put almost all attention on BOS, trigger queries attend elsewhere, BOS's value is drained",
        paper_value="sinks and drains in 1- to 3-layer models", source="[abstract]",
        measured={"layer": layer, "sink_nontrigger": sink, "sink_trigger": trig, "value_out_ratio": value},
        rule=all_of(at_least(sink, SINK_MIN, what="at the sink layer: non-trigger BOS share"),
                    at_most(trig, TRIGGER_SINK_MAX, what="trigger BOS share"),
                    at_most(value, VALUE_RATIO_MAX, what="||W_O v_BOS|| / median")))
