"""Two-hop in-context reasoning and its phase transition (Guo et al. 2025, arXiv 2502.13913).

What this study does, in order:

1. trains the 3-layer, 1-head transformer on the two-hop task with K-1 distracting chains
   (``lmlab.tasks.two_hop``), evaluating every ``eval_every`` steps on a fixed set: accuracy,
   loss at the answer, probability on the target End vs the distracting Ends, and attention
   summaries of every head (below);
2. detects the phase transition: the step where accuracy crosses 0.5 (``t_half``), the slow phase
   (the middle half of the steps before ``t_half``, a window fixed by ``t_half`` alone, so the accuracy
   tested there can fail on either side of 1/K), and how many steps the jump took;
3. simulates the paper's three-parameter model (SGD, lr 0.1) and plots its loss beside the
   transformer's;
4. reads the mechanism from the attention patterns: which layer makes each premise's second
   token attend to its first (``prev_token``), which makes each End attend to the bridge of its
   chain's first premise (``bridge``), and which makes the query attend to the target End
   (``query_end``), and when each appears, from evaluations every ``dense_eval_every`` steps (the full
   evaluation, with the attention-map example and the stopping rule, every ``train.eval_every``). The route
   of the bridge step is fixed in the config (``bridge_route``, the paper's: each End finds its chain's
   bridge), not chosen from the results;
5. writes figures and ``summary.json`` with the paper's claims beside our numbers.

The default config is the paper's (d_model 256, AdamW 3e-4, batch 512, 10k steps: a GPU job).
``--quick`` is d_model 64 with lr 1e-3 and at most 4,000 steps (training stops once the task is
solved), which shows the same two phases on a laptop CPU (timings in docs/studies/two-hop.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from lmlab.analysis.curves import first_crossing
from lmlab.config import Config, ConfigError
from lmlab.nn import TinyConfig, TinyTransformer
from lmlab.studies.base import (Claim, Result, Study, all_of, at_least, between, is_true, not_comparable, pyplot,
                                save_figure, within)
from lmlab.tasks.two_hop import TwoHopSample, TwoHopTask, TwoHopTaskConfig
from lmlab.train import TrainConfig, train

PAPER_MODEL = dict(n_layers=3, n_heads=1, d_model=256, act_fn="relu", pos_embed="learned", layer_norm=True, bias=False)
PAPER_LR, PAPER_BATCH, PAPER_N_CHAINS = 3e-4, 512, 5

# Claim thresholds (each rule's words are produced from these by lmlab.claims)
SLOW_PHASE_TOL = 0.1  # |slow-phase accuracy - 1/K|; also "near chance" when finding the slow phase's end
HALF_ACC = 0.5  # accuracy that marks the transition (t_half); attention score that marks an edge as formed
SOLVED_ACC = 0.99  # "full accuracy"
ABRUPT_MAX_SHARE = 0.5  # jump length <= this x slow-phase length
PAPER_T_HALF_RANGE = (600, 1200)  # judged only at the paper's configuration
PLATEAU_TOL = 0.1  # three-parameter model: |plateau - ln 31|
COLLAPSED_LOSS = 0.05  # three-parameter model: final loss below this
MIN_HALVING_STEP = 100  # three-parameter model: the loss halves only after this step (a plateau first)
MIN_EDGE_ATTN = 0.5  # each circuit edge's final attention in its layer
ORDER_WINDOW = 300  # steps between each edge forming and t_half
SLOW_WINDOW = (0.25, 0.75)  # the slow phase: this share of the steps before t_half (skips the initial transient)
# The paper's numbers
PAPER_T_HALF = "800-900"
PAPER_PLATEAU = math.log(31)
PAPER_EDGE_STEPS = {"prev_token": 800, "bridge": 850, "query_end": 900}


@dataclass(frozen=True)
class TwoHopStudyConfig(Config):
    """The paper's setting. ``seed`` seeds the data stream and the initialisation, and the training loop
    unless ``train.seed`` is set."""

    seed: int = 42
    task: TwoHopTaskConfig = field(default_factory=TwoHopTaskConfig)
    model: TinyConfig = field(default_factory=lambda: TinyConfig(**PAPER_MODEL))
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(
            steps=10_000, lr=PAPER_LR, betas=(0.9, 0.99), eps=1e-8, weight_decay=1e-4, eval_every=50, log_every=10,
            checkpoint_every=250,
        )
    )
    batch_size: int = PAPER_BATCH
    eval_size: int = 1024
    # Feed only the tokens up to the answer: exact (causal attention, loss only at the answer), 1/8 cheaper.
    trim_after_answer: bool = True
    # Stop once this many consecutive evals reach solved_acc (0: always run train.steps).
    stop_after_solved: int = 6
    solved_acc: float = 0.995
    # Three-parameter model (the paper's code): SGD lr 0.1 for 4,000 steps, N = 10, from N(0, 1).
    three_param_seeds: int = 5
    three_param_steps: int = 4000
    three_param_lr: float = 0.1
    # Evaluate this often (steps) for the transition and edge-formation steps; the full evaluation (attention
    # example, stopping rule) stays at train.eval_every. Must divide train.eval_every.
    dense_eval_every: int = 10
    # Which bridge edge the mechanism claims judge, fixed before any run: the paper's (each End attends to the
    # bridge of its chain's first premise) or the other route (the query attends to that bridge).
    bridge_route: Literal["end_bridge", "query_bridge"] = "end_bridge"

    def validate(self) -> None:
        if self.dense_eval_every < 1 or self.train.eval_every % self.dense_eval_every:
            raise ConfigError(f"TwoHopStudyConfig.dense_eval_every ({self.dense_eval_every}) must be >= 1 and divide "
                              f"train.eval_every ({self.train.eval_every})")
        if self.batch_size < 1 or self.eval_size < 1:
            raise ConfigError("TwoHopStudyConfig.batch_size and eval_size must be >= 1")
        if not 0 < self.solved_acc <= 1:
            raise ConfigError(f"TwoHopStudyConfig.solved_acc must be in (0, 1], got {self.solved_acc}")
        if self.three_param_seeds < 1 or self.three_param_steps < 10:
            raise ConfigError("TwoHopStudyConfig.three_param_seeds must be >= 1 and three_param_steps >= 10")


# ----------------------------------------------------------------------------------------------
# Three-parameter model (paper, section on training dynamics; repository notebook)
# ----------------------------------------------------------------------------------------------
def sigma_n(u: torch.Tensor, n: float) -> torch.Tensor:
    """sigma_N(u) = e^u / (e^u + N): the softmax weight of one logit u against N logits at 0."""
    return torch.sigmoid(u - math.log(n))


def three_param_loss(alpha: torch.Tensor, beta: torch.Tensor, gamma: torch.Tensor, n: int = 10) -> torch.Tensor:
    """L = -ln sigma_30(z), with y = beta sigma_N(alpha) and z = gamma (sigma_N(y) + 1/(N+1)) sigma_N(alpha)."""
    y = beta * sigma_n(alpha, n)
    z = gamma * (sigma_n(y, n) + 1 / (n + 1)) * sigma_n(alpha, n)
    return -torch.log(sigma_n(z, 30))


def simulate_three_param(seeds: list[int], steps: int = 4000, lr: float = 0.1, n: int = 10) -> list[dict[str, Any]]:
    """Plain gradient descent on (alpha, beta, gamma) from N(0, 1), one independent run per seed.

    The runs are batched into one tensor (the losses are summed, so each run gets its own gradient).
    """
    params = torch.stack([torch.randn(3, generator=torch.Generator().manual_seed(s), dtype=torch.float64) for s in seeds])
    params.requires_grad_(True)
    opt = torch.optim.SGD([params], lr=lr)
    losses = np.empty((steps, len(seeds)))
    for t in range(steps):
        loss = three_param_loss(params[:, 0], params[:, 1], params[:, 2], n)
        opt.zero_grad()
        loss.sum().backward()
        opt.step()
        losses[t] = loss.detach().numpy()
    return [{"seed": s, "loss": losses[:, i], "params": params[i].detach().tolist()} for i, s in enumerate(seeds)]


# ----------------------------------------------------------------------------------------------
# Measurements on a recorded batch
# ----------------------------------------------------------------------------------------------
def answer_metrics(logits: torch.Tensor, sample: TwoHopSample, answer_index: int) -> dict[str, float]:
    """Accuracy, loss and probability on the target End vs the K-1 distracting Ends, at the answer position."""
    logp = logits[:, answer_index].float().log_softmax(-1).cpu()
    probs = logp.exp()
    n = len(sample.query_chain)
    ends = torch.from_numpy(sample.chains[:, :, 2])  # (n, K)
    target = ends[torch.arange(n), torch.from_numpy(sample.query_chain)]
    p_ends = probs.gather(1, ends)
    p_target = probs[torch.arange(n), target]
    p_distract = p_ends.sum(1) - p_target
    return {
        "acc": (probs.argmax(-1) == target).float().mean().item(),
        "loss": -logp[torch.arange(n), target].mean().item(),
        "p_target": p_target.mean().item(),
        "p_distract": p_distract.mean().item(),
        "candidate_mass": p_ends.sum(1).mean().item(),
        "target_share": (p_target / p_ends.sum(1).clamp_min(1e-12)).mean().item(),
    }


def attention_scores(patterns: list[torch.Tensor], sample: TwoHopSample, answer_index: int) -> dict[str, list[list[float]]]:
    """Per layer and head, the mean attention along the edges of the two-hop circuit.

    ``patterns[l]`` is (n, head, query, key). With premise 1 = (Src, Brg) at positions (p1, p1+1) and
    premise 2 = (Brg, End) at (p2, p2+1), and the query Src at the answer index Q:
      prev_token: from each premise's second token to its first (p+1 -> p), so Brg holds Src and End holds Brg;
      query_bridge: Q -> p1+1 of the target chain: the query finds the Brg that follows its Src;
      end_bridge: p2+1 -> p1+1 for every chain: each End finds its chain's Src (the other way to route the bridge);
      query_end / query_distract: Q -> the target End / -> all the other Ends;
      query_src: Q -> the Src occurrence in the context (p1).
    """
    n, K = sample.chains.shape[:2]
    rows = torch.arange(n)
    pos = torch.from_numpy(sample.premise_pos)  # (n, K, 2)
    end_pos = pos[:, :, 1] + 1
    q = torch.from_numpy(sample.query_chain)
    out: dict[str, list[list[float]]] = {
        k: [] for k in ("prev_token", "query_bridge", "end_bridge", "query_end", "query_distract", "query_src")}
    firsts = torch.arange(0, 4 * K, 2)
    for P in patterns:
        P = P.float().cpu()  # (n, H, T, T)
        prev = P[:, :, firsts + 1, firsts].mean(dim=(0, 2))
        bridge = torch.stack([P[rows, :, end_pos[:, c], pos[:, c, 0] + 1] for c in range(K)], 0).mean(dim=(0, 1))
        q_row = P[:, :, answer_index, :]  # (n, H, T)
        to_ends = q_row.gather(2, end_pos[:, None, :].expand(-1, P.shape[1], -1))  # (n, H, K)
        q_end = to_ends[rows, :, q]
        q_src = q_row[rows, :, pos[rows, q, 0]]
        q_bridge = q_row[rows, :, pos[rows, q, 0] + 1]
        for key, val in (("prev_token", prev), ("query_bridge", q_bridge.mean(0)), ("end_bridge", bridge),
                         ("query_end", q_end.mean(0)),
                         ("query_distract", (to_ends.sum(2) - q_end).mean(0)), ("query_src", q_src.mean(0))):
            out[key].append([round(float(v), 4) for v in val])
    return out


def analyze_transition(steps: list[int], acc: list[float], chance: float, solved: float = SOLVED_ACC) -> dict[str, Any]:
    """Find the slow phase and the jump in an accuracy curve.

    ``t_half``: first eval with accuracy >= ``HALF_ACC`` (None: no transition).
    ``slow_window``: the evals in the ``SLOW_WINDOW`` share of the steps before ``t_half`` (fixed by ``t_half``
    alone, never by the accuracy it holds); ``slow_acc``: their mean accuracy (None without a transition).
    ``t_start``: last eval before ``t_half`` with accuracy <= chance + ``SLOW_PHASE_TOL``: where the jump starts.
    ``t_solved``: first eval at or after ``t_half`` with accuracy >= ``solved``.
    """
    steps_a, acc_a = np.asarray(steps), np.asarray(acc)
    above = np.nonzero(acc_a >= HALF_ACC)[0]
    res: dict[str, Any] = {"t_half": None, "t_start": None, "t_solved": None, "jump_steps": None,
                           "slow_acc": None, "slow_window": None, "slow_steps": None}
    end = above[0] if len(above) else len(acc_a)
    low = np.nonzero(acc_a[:end] <= chance + SLOW_PHASE_TOL)[0]
    if len(low):
        t_start = int(steps_a[low[-1]])
        res.update(t_start=t_start, slow_steps=t_start - int(steps_a[0]))
    if len(above):
        t0, t1 = steps_a[0], steps_a[above[0]]
        lo, hi = t0 + SLOW_WINDOW[0] * (t1 - t0), t0 + SLOW_WINDOW[1] * (t1 - t0)
        window = (steps_a >= lo) & (steps_a <= hi)
        if window.any():
            res.update(slow_acc=float(acc_a[window].mean()),
                       slow_window=[int(steps_a[window][0]), int(steps_a[window][-1])])
        res["t_half"] = int(steps_a[above[0]])
        solved_idx = np.nonzero((acc_a >= solved) & (steps_a >= steps_a[above[0]]))[0]
        if len(solved_idx):
            res["t_solved"] = int(steps_a[solved_idx[0]])
            if res["t_start"] is not None:
                res["jump_steps"] = res["t_solved"] - res["t_start"]
    return res


# ----------------------------------------------------------------------------------------------
# The study
# ----------------------------------------------------------------------------------------------
class TwoHopStudy(Study):
    name = "two-hop"
    title = "Two-hop in-context reasoning: slow guessing phase, then an abrupt transition"
    paper = "Guo et al., How Do LLMs Perform Two-Hop Reasoning in Context? arXiv 2502.13913"
    config_cls = TwoHopStudyConfig

    #: a seconds-scale run for the control test: d_model 16, 30 steps, small batches
    tiny = ("model.d_model=16", "train.steps=30", "train.eval_every=10", "train.checkpoint_every=30", "batch_size=32",
            "eval_size=64", "three_param_seeds=2", "three_param_steps=200", "dense_eval_every=10")

    def control_config(self, cfg: TwoHopStudyConfig) -> TwoHopStudyConfig:
        """Learning switched off: the transformer and the three-parameter model get learning rate 1e-9
        (``TrainConfig.lr`` must be > 0; over 4,000 steps Adam then moves each weight by at most ~4e-6)."""
        return cfg.replace(train=cfg.train.replace(lr=1e-9), three_param_lr=1e-9)

    def quick_config(self) -> TwoHopStudyConfig:
        """d_model 64 and lr 1e-3 (paper: 256 and 3e-4), at most 4,000 steps: same data, loss and architecture."""
        base = TwoHopStudyConfig()
        return base.replace(
            model=base.model.replace(d_model=64),
            train=base.train.replace(steps=4000, lr=1e-3, eval_every=50, checkpoint_every=250),
            eval_size=1024,
        )

    def execute(self, cfg: TwoHopStudyConfig, out: Path, quick: bool, resume: bool) -> Result:
        task = TwoHopTask(cfg.task, seed=cfg.seed)
        model_cfg = cfg.model.replace(d_vocab=task.d_vocab, n_ctx=task.n_ctx)
        train_cfg = cfg.train.seeded(cfg.seed)
        torch.manual_seed(cfg.seed)
        model = TinyTransformer(model_cfg)
        ev = task.eval_sample(cfg.eval_size)
        ev_batch = task.to_batch(ev, trim=cfg.trim_after_answer)

        full_every = train_cfg.eval_every

        def evaluate(m: TinyTransformer, step: int) -> dict[str, Any]:
            device = next(m.parameters()).device
            with m.record("blocks.*.attn.hook_pattern") as cache:
                logits = m(ev_batch.tokens.to(device))
            patterns = [cache[f"blocks.{i}.attn.hook_pattern"] for i in range(model_cfg.n_layers)]
            row = {**answer_metrics(logits, ev, task.answer_index), "full": step % full_every == 0,
                   "attn": attention_scores(patterns, ev, task.answer_index)}
            if row["full"]:  # head 0 of every layer on eval example 0, for the attention-map figure
                row["attn_example"] = [np.round(p[0, 0].float().cpu().numpy(), 3).tolist() for p in patterns]
            return row

        def solved(evals: list[dict[str, Any]]) -> bool:
            k = cfg.stop_after_solved
            full = [e for e in evals if e.get("full", True)]
            return k > 0 and evals[-1].get("full", True) and len(full) >= k and all(
                e["acc"] >= cfg.solved_acc for e in full[-k:])

        result = train(
            model, train_cfg.replace(eval_every=cfg.dense_eval_every),
            lambda step: task.batch(step, cfg.batch_size, trim=cfg.trim_after_answer), out, eval_fn=evaluate,
            stop_fn=solved, resume=resume,
            meta={"task": cfg.task.to_dict(), "task_version": task.version, "model": model_cfg.to_dict(),
                  "batch_size": cfg.batch_size, "seed": cfg.seed, "full_eval_every": full_every},
            code=("lmlab.tasks.two_hop", "lmlab.studies.two_hop:answer_metrics",
                  "lmlab.studies.two_hop:attention_scores"),
        )
        evals = result.evals
        if not evals[-1].get("full", True):  # the final eval of a stopped run: keep the attention example
            evals[-1]["attn_example"] = next(e["attn_example"] for e in reversed(evals) if "attn_example" in e)
        K = cfg.task.n_chains
        steps = [e["step"] for e in evals]
        acc = [e["acc"] for e in evals]
        tr = analyze_transition(steps, acc, chance=1 / K)
        three = simulate_three_param(list(range(cfg.three_param_seeds)), cfg.three_param_steps, cfg.three_param_lr)
        mech = self._mechanism(evals, model_cfg.n_layers)

        figures = self._figures(out, evals, tr, three, mech, K)
        claims = self._claims(cfg, model_cfg, evals, tr, three, mech, quick)
        metrics = {
            "transition": tr,
            "final": {k: evals[-1][k] for k in ("step", "acc", "loss", "p_target", "p_distract", "candidate_mass")},
            "stopped_early": result.stopped_early,
            "train_seconds": round(result.seconds, 1),
            "mechanism": mech,
            "three_param": [{"seed": t["seed"], "final_loss": float(t["loss"][-1]), "params": t["params"],
                             "halving_step": _halving_step(t["loss"])} for t in three],
            "n_params": model.n_params,
        }
        return Result(claims, metrics, figures, task.version, stages={"transformer": result.stage})

    # -- analysis -----------------------------------------------------------------------------
    @staticmethod
    def _mechanism(evals: list[dict[str, Any]], n_layers: int) -> dict[str, Any]:
        """For each circuit edge: the layer/head that carries it at the end, its score, and when it crossed 0.5."""
        steps = [e["step"] for e in evals]
        mech: dict[str, Any] = {}
        for key in ("prev_token", "query_bridge", "end_bridge", "query_end"):
            final = evals[-1]["attn"][key]
            layer, head = max(((l, h) for l in range(n_layers) for h in range(len(final[l]))), key=lambda lh: final[lh[0]][lh[1]])
            curve = [e["attn"][key][layer][head] for e in evals]
            mech[key] = {"layer": layer, "head": head, "final": final[layer][head],
                         "step_crossed_0.5": first_crossing(steps, curve, HALF_ACC), "all_layers_final": final}
        return mech

    def _claims(self, cfg: TwoHopStudyConfig, model_cfg: TinyConfig, evals: list[dict[str, Any]], tr: dict[str, Any],
                three: list[dict[str, Any]], mech: dict[str, Any], quick: bool) -> list[Claim]:
        K = cfg.task.n_chains
        final = evals[-1]
        claims = []

        slow = tr["slow_acc"]
        lo_w, hi_w = SLOW_WINDOW
        window = [e for e in evals if tr["slow_window"] and tr["slow_window"][0] <= e["step"] <= tr["slow_window"][1]]
        claims.append(Claim.judged(
            "slow_phase_random_guessing",
            "In the slow phase the transformer guesses at random among the K candidate End tokens",
            paper_value=round(1 / K, 3), measured=None if slow is None else round(slow, 3),
            rule=within(slow, 1 / K, SLOW_PHASE_TOL,
                        what=f"mean accuracy over evals in [{lo_w}, {hi_w}] x t_half (a transition must exist)"),
            source="[abstract]",
            evidence={"slow_window": tr["slow_window"], "t_half": tr["t_half"],
                      "mean_candidate_mass": _mean([e["candidate_mass"] for e in window]),
                      "mean_target_share_of_candidates": _mean([e["target_share"] for e in window])},
        ))
        claims.append(Claim.judged(
            "transition_to_full_accuracy",
            "After an abrupt phase transition the transformer reaches 100% accuracy",
            paper_value=1.0, measured=round(final["acc"], 4),
            rule=all_of(is_true(tr["t_half"] is not None, f"a transition is detected (accuracy crosses {HALF_ACC})"),
                        at_least(final["acc"], SOLVED_ACC, what="final accuracy")),
            source="[abstract]", evidence={"t_half": tr["t_half"], "final_step": final["step"]},
        ))
        jump, slow_steps = tr["jump_steps"], tr["slow_steps"]
        claims.append(Claim.judged(
            "transition_is_abrupt",
            "The jump from guessing to solved is abrupt: much shorter than the slow phase before it",
            paper_value="abrupt (qualitative)", measured={"jump_steps": jump, "slow_phase_steps": slow_steps},
            rule=is_true(jump is not None and slow_steps is not None and jump <= ABRUPT_MAX_SHARE * slow_steps,
                         f"steps from end of slow phase to accuracy >= {SOLVED_ACC} <= {ABRUPT_MAX_SHARE} x "
                         "slow-phase length"),
            source="[abstract]",
        ))
        paper_setting = (model_cfg.d_model == PAPER_MODEL["d_model"] and cfg.batch_size == PAPER_BATCH
                         and math.isclose(cfg.train.lr, PAPER_LR) and cfg.task.n_chains == PAPER_N_CHAINS)
        t_half = tr["t_half"]
        lo, hi = PAPER_T_HALF_RANGE
        claims.append(Claim.judged(
            "transition_step_paper_config",
            "Transition near step 800-900 at the paper's configuration (d=256, batch 512, AdamW 3e-4)",
            paper_value=PAPER_T_HALF, measured=t_half,
            rule=between(t_half, lo, hi, what="t_half") if paper_setting else not_comparable(
                f"t_half in [{lo}, {hi}], judged only at the paper's configuration (d_model "
                f"{PAPER_MODEL['d_model']}, batch {PAPER_BATCH}, lr {PAPER_LR}, K = {PAPER_N_CHAINS})"),
            source="[code] repository notes",
            evidence={"paper_setting": paper_setting, "d_model": model_cfg.d_model, "lr": cfg.train.lr},
        ))

        plateau = [float(np.median(t["loss"][: max(1, len(t["loss"]) // 10)])) for t in three]
        finals = [float(t["loss"][-1]) for t in three]
        halving = [_halving_step(t["loss"]) for t in three]
        claims.append(Claim.judged(
            "three_param_plateau_then_collapse",
            "The three-parameter model plateaus at ln 31 = 3.434 (z = 0), then its loss collapses",
            paper_value={"plateau": round(PAPER_PLATEAU, 3), "collapse": "to ~0 within 4,000 SGD steps"},
            measured={"plateau_median_first_10pct": [round(p, 3) for p in plateau], "final": [round(f, 4) for f in finals],
                      "halving_step": halving},
            rule=is_true(all(abs(p - PAPER_PLATEAU) <= PLATEAU_TOL for p in plateau)
                         and all(f < COLLAPSED_LOSS for f in finals)
                         and all(h is not None and h > MIN_HALVING_STEP for h in halving),
                         f"every seed: |plateau - ln 31| <= {PLATEAU_TOL}, final loss < {COLLAPSED_LOSS}, and loss "
                         f"halves after step {MIN_HALVING_STEP}"),
            source="[code]",
        ))

        # The bridge step can be routed two ways; the judged one is fixed in the config before any run.
        bridge = cfg.bridge_route
        other = "query_bridge" if bridge == "end_bridge" else "end_bridge"
        expected = {"prev_token": 0, bridge: 1, "query_end": model_cfg.n_layers - 1}
        layers_ok = all(mech[k]["layer"] == v and mech[k]["final"] >= MIN_EDGE_ATTN for k, v in expected.items())
        layers_words = f"each edge is carried most strongly by the expected layer, with attention >= {MIN_EDGE_ATTN}"
        claims.append(Claim.judged(
            "mechanism_layers",
            "After the transition the early layers fetch the preceding entity (layer 0) and the bridge (layer 1), "
            "and the last layer's query attends to the target End",
            paper_value={"prev_token": "layer 0", "bridge": "layer 1", "query_end": "last layer"},
            measured={k: {"layer": mech[k]["layer"], "score": mech[k]["final"]} for k in expected},
            rule=is_true(layers_ok, layers_words) if model_cfg.n_layers >= 3 else not_comparable(
                f"{layers_words}; needs at least 3 layers"),
            source="[abstract] + [code] notebook",
            evidence={"bridge_route": f"{bridge} (fixed in the config)", "query_bridge": mech["query_bridge"],
                      "end_bridge": mech["end_bridge"],
                      f"same rule with {other}": is_true(
                          mech[other]["layer"] == 1 and mech[other]["final"] >= MIN_EDGE_ATTN, "").status},
        ))
        order = [mech[k]["step_crossed_0.5"] for k in expected]
        claims.append(Claim.judged(
            "mechanism_order",
            "The three attention edges form in order (layer 0, then 1, then 2), at the transition",
            paper_value=PAPER_EDGE_STEPS,
            measured=dict(zip(expected, order)),
            rule=is_true(all(o is not None for o in order) and order[0] < order[1] < order[2]
                         and tr["t_half"] is not None and all(abs(o - tr["t_half"]) <= ORDER_WINDOW for o in order),
                         f"all three cross {HALF_ACC}, strictly in order prev_token < {bridge} < query_end at "
                         f"{cfg.dense_eval_every}-step resolution, within {ORDER_WINDOW} steps of t_half"),
            source="[code] repository notes (d=256 steps)",
            evidence={"eval_spacing": cfg.dense_eval_every, "t_half": tr["t_half"],
                      f"with {other}": mech[other]["step_crossed_0.5"]},
        ))
        return claims

    # -- figures --------------------------------------------------------------------------------
    def _figures(self, out: Path, evals: list[dict[str, Any]], tr: dict[str, Any], three: list[dict[str, Any]],
                 mech: dict[str, Any], K: int) -> list[str]:
        plt = pyplot()

        steps = np.array([e["step"] for e in evals])
        names = []

        fig, axes = plt.subplots(1, 3, figsize=(15, 4))
        axes[0].plot(steps, [e["acc"] for e in evals], label="accuracy")
        axes[0].axhline(1 / K, ls="--", c="gray", label=f"chance 1/K = {1 / K:.2f}")
        axes[1].plot(steps, [e["loss"] for e in evals], c="C1", label="loss at the answer")
        axes[1].axhline(math.log(K), ls="--", c="gray", label=f"ln K = {math.log(K):.2f}")
        axes[2].plot(steps, [e["p_target"] for e in evals], label="p(target End)")
        axes[2].plot(steps, [e["p_distract"] for e in evals], label="p(distracting Ends), summed")
        axes[2].plot(steps, [1 - e["candidate_mass"] for e in evals], label="p(any other token)")
        for ax, title in zip(axes, ("Accuracy", "Loss", "Probability mass at the answer")):
            if tr["t_half"] is not None:
                ax.axvline(tr["t_half"], c="red", alpha=0.4, label=f"transition (acc 0.5) @ {tr['t_half']}")
            ax.set_title(title)
            ax.set_xlabel("step")
            ax.legend(fontsize=8)
        names.append(save_figure(fig, out, "training.png"))

        n_layers = len(evals[-1]["attn"]["prev_token"])
        shown = [e for e in evals if "attn_example" in e]
        slow_eval = shown[0]
        if tr["slow_window"]:
            mid = (tr["slow_window"][0] + tr["slow_window"][1]) / 2
            slow_eval = min(shown, key=lambda e: abs(e["step"] - mid))
        fig = plt.figure(figsize=(4 * n_layers + 5, 8))
        gs = fig.add_gridspec(2, n_layers + 1, width_ratios=[1.4] + [1] * n_layers)
        ax = fig.add_subplot(gs[:, 0])
        for key, ls in (("prev_token", "-"), ("query_bridge", "-"), ("end_bridge", "--"), ("query_end", "-"),
                        ("query_distract", ":")):
            layer = mech.get(key, mech["query_end"])["layer"]
            ax.plot(steps, [e["attn"][key][layer][0] for e in evals], ls=ls, label=f"{key} (layer {layer})")
        if tr["t_half"] is not None:
            ax.axvline(tr["t_half"], c="red", alpha=0.4)
        ax.set_title("Attention along the two-hop circuit")
        ax.set_xlabel("step")
        ax.legend(fontsize=8)
        for row, e in enumerate((slow_eval, evals[-1])):
            for layer in range(n_layers):
                a = fig.add_subplot(gs[row, layer + 1])
                a.imshow(np.array(e["attn_example"][layer]), cmap="viridis", vmin=0, vmax=1)
                a.set_title(f"layer {layer}, step {e['step']}", fontsize=9)
                a.set_xlabel("key")
                a.set_ylabel("query")
        names.append(save_figure(fig, out, "attention.png"))

        fig, axes = plt.subplots(1, 2, figsize=(11, 4))
        for t in three:
            axes[0].plot(t["loss"], label=f"seed {t['seed']}")
        axes[0].axhline(math.log(31), ls="--", c="gray", label="ln 31")
        axes[0].set_title("Three-parameter model (SGD, lr 0.1)")
        axes[1].plot(steps, [e["loss"] for e in evals], c="C1")
        axes[1].axhline(math.log(K), ls="--", c="gray", label=f"ln K = {math.log(K):.2f}")
        axes[1].set_title("Transformer: loss at the answer")
        for a in axes:
            a.set_xlabel("step")
            a.set_ylabel("loss")
            a.legend(fontsize=8)
        names.append(save_figure(fig, out, "three_param.png"))
        return names


def _halving_step(loss: np.ndarray) -> int | None:
    idx = np.nonzero(loss <= loss[0] / 2)[0]
    return int(idx[0]) if len(idx) else None


def _mean(xs: list[float]) -> float | None:
    return round(float(np.mean(xs)), 4) if xs else None
