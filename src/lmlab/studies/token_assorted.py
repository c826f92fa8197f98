"""Token Assorted: mixing latent and text tokens in a reasoning trace (Su et al. 2025, arXiv 2502.03275).

What this study does, in order (the maze setting of the paper, trained from scratch):

1. **Data** (``lmlab.tasks.maze``, version ``maze/2``): ``n_train`` training and ``n_eval`` held-out
   keys-finding mazes, each with the solver's A* search trace (costs and parent pointers, so the trace determines
   the plan) and its shortest path.
2. **VQ-VAE** (``lmlab.nn.vqvae``): trained with the lab's training loop on i.i.d. batches of the chunks of ``L``
   trace tokens of the training mazes; its decoder sees the codes plus one pooled prompt vector g(P), no chunk
   index and no cross-attention to the maze tokens, so the codes must carry the chunk. Reported on held-out chunks:
   exact-chunk and token reconstruction with the true codes and with the codes shuffled across chunks, exact-chunk
   rate by chunk index, codebook usage and perplexity.
3. **Three language models** (``TinyTransformer``), trained from scratch with the same loop on i.i.d. batches, loss
   on everything after the prompt:

   - ``answer``: ``BOS grid PLAN path EOS`` (the paper's Sol-Only);
   - ``trace``: ``BOS grid TRACE trace PLAN path EOS`` (CoT);
   - ``mixed``: the first m text tokens of the trace replaced by their m / r codes,
     ``BOS grid TRACE BOL z_1 .. z_k EOL trace[m:] PLAN path EOS`` (left-to-right prefix replacement, a single
     stage, no curriculum). **Mixing rule**: for every example, m (in text tokens) is drawn uniformly from the
     spec's set ``mix_tokens`` = {0, 72, 128, 160, 192, 224, 256}, rounded down to whole chunks of L and capped at
     the trace's full chunks (at L = 8 every value of the set is a whole number of chunks: 72 = 9 x 8). The
     vocabulary is extended by the codebook.
4. **Evaluation** as the paper: **1-Feasible-10**: ``samples`` = 10 continuations per held-out maze from ``BOS
   grid``, temperature 1, top-k 10, KV-cached (``TinyTransformer.generate``); a maze is solved when any sample's
   plan passes :func:`lmlab.tasks.maze.validate_path` (never compared with the solver's string), and solved
   optimally when a valid plan is as short as the solver's. Trace length: generated tokens before ``PLAN`` (latent
   codes and their markers counted). The greedy plan is reported too.

``--quick`` and the default (a device job) are documented in :meth:`TokenAssortedStudy.quick_config` and
docs/studies/token-assorted.md, with the pilot that chose the quick maze size.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from lmlab.config import Config, ConfigError
from lmlab.io import atomic_write_text, fingerprint
from lmlab.nn import TinyConfig, TinyTransformer
from lmlab.nn.vqvae import VQVAE, VQVAEConfig, codebook_usage
from lmlab.studies.base import Claim, Result, Study, all_of, at_least, at_most, greater, pyplot, save_figure
from lmlab.tasks.maze import BOL, EOL, EOS, PAD, PLAN, TRACE, Maze, MazeTask, MazeTaskConfig, validate_path
from lmlab.train import Batch, TrainConfig, train

ARMS = ("answer", "trace", "mixed")

# Claim thresholds (each rule's words are produced from these by lmlab.claims); fixed before any run of maze/2
SE_MULT = 2.0  # solve-rate differences are judged in standard errors of the difference
MIN_TRACE_SOLVE = 0.1  # the text-trace model must solve this share, else "mixed >= trace" is vacuous
LENGTH_RATIO_MAX = 0.8  # mixed / text-trace mean trace length over mazes both solve: "markedly shorter"
MIN_COMMON = 10  # mazes both trace models solve, else the length ratio is not measured
# The paper's numbers (maze setting; 1-Feasible-10 in %, output tokens)
PAPER_TRACE_TOKENS = {"sol_only": 645, "cot": 1312, "latent": 374.6}
PAPER_FEASIBLE = {"sol_only": 3, "cot": 43, "latent": 62.8}
SPEC_MIX_TOKENS = (0, 72, 128, 160, 192, 224, 256)


@dataclass(frozen=True)
class TokenAssortedConfig(Config):
    """Paper-like defaults (a device job); ``--quick`` is documented in :meth:`TokenAssortedStudy.quick_config`."""

    seed: int = 0
    task: MazeTaskConfig = field(default_factory=lambda: MazeTaskConfig(size=9, n_keys=2, wall_density=0.2))
    n_train: int = 50_000
    n_eval: int = 1000
    # d_vocab and prompt_len are set from the task at run time
    vqvae: VQVAEConfig = field(default_factory=lambda: VQVAEConfig(
        chunk_len=16, compression=16, codebook_size=1024, d_model=512, n_heads=8, n_layers=2, beta=0.25,
        reset_dead_every=500))
    vq_train: TrainConfig = field(default_factory=lambda: TrainConfig(
        steps=100_000, optimizer="adam", lr=1e-5, betas=(0.9, 0.999), weight_decay=0.0, eval_every=5000,
        log_every=100, checkpoint_every=5000))
    vq_batch_size: int = 32
    # d_vocab and n_ctx are set from the data at run time
    model: TinyConfig = field(default_factory=lambda: TinyConfig(n_layers=12, d_model=768, n_heads=12, init="gpt2",
                                                                 act_fn="gelu"))
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        steps=50_000, lr=3e-4, betas=(0.9, 0.98), weight_decay=0.01, warmup_steps=1000, schedule="cosine",
        min_lr_ratio=0.1, grad_clip=1.0, eval_every=2500, log_every=100, checkpoint_every=2500))
    batch_size: int = 64
    mix_tokens: tuple[int, ...] = SPEC_MIX_TOKENS  # m (text tokens made latent) is drawn from these per example
    arms: tuple[str, ...] = ARMS
    samples: int = 10  # 1-Feasible-k: k samples per maze
    temperature: float = 1.0
    top_k: int = 10
    eval_batch_size: int = 550  # generated rows per batch (samples + 1 per maze)

    def validate(self) -> None:
        if self.n_train < 1 or self.n_eval < 1:
            raise ConfigError("TokenAssortedConfig.n_train and n_eval must be >= 1")
        if self.batch_size < 1 or self.vq_batch_size < 1 or self.eval_batch_size < 1:
            raise ConfigError("TokenAssortedConfig.batch_size, vq_batch_size and eval_batch_size must be >= 1")
        if not self.mix_tokens or min(self.mix_tokens) < 0:
            raise ConfigError(f"TokenAssortedConfig.mix_tokens must be a non-empty list of token counts >= 0, "
                              f"got {self.mix_tokens}")
        if self.samples < 1 or self.temperature < 0 or self.top_k < 1:
            raise ConfigError("TokenAssortedConfig.samples and top_k must be >= 1 and temperature >= 0")
        bad = [a for a in self.arms if a not in ARMS]
        if bad or not self.arms or len(set(self.arms)) != len(self.arms):
            raise ConfigError(f"TokenAssortedConfig.arms must be distinct names from {', '.join(ARMS)}, got {self.arms}")


# ----------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------
#: the code a trained checkpoint depends on besides the loop and the model's module (lmlab.train.train adds those);
#: the VQ-VAE's batch function lives inside the study class, whose claims and figures should not retrain it
VQ_CODE = ("lmlab.tasks.maze", "lmlab.studies.token_assorted:build_data", "lmlab.studies.token_assorted:chunk_table",
           "lmlab.studies.token_assorted:iid_rows")
ARM_CODE = ("lmlab.tasks.maze", "lmlab.studies.token_assorted:build_data", "lmlab.studies.token_assorted:sequence",
            "lmlab.studies.token_assorted:pad_batch", "lmlab.studies.token_assorted:draw_m",
            "lmlab.studies.token_assorted:iid_rows", "lmlab.studies.token_assorted:model_batch",
            "lmlab.studies.token_assorted:teacher_forced_metrics")


@dataclass
class MazeData:
    """Token lists of every maze: prompt, trace (without the TRACE marker), plan (PLAN path EOS)."""

    mazes: list[Maze]
    prompts: np.ndarray  # (n, prompt_len)
    traces: list[list[int]]
    plans: list[list[int]]
    codes: list[np.ndarray] | None = None  # per maze (full chunks, codes per chunk), latent ids from 0


def build_data(task: MazeTask, mazes: list[Maze]) -> MazeData:
    return MazeData(mazes, np.array([task.prompt(m) for m in mazes], dtype=np.int64),
                    [task.trace_tokens(m) for m in mazes], [task.plan_tokens(m.path) for m in mazes])


def chunk_table(data: MazeData, L: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All full chunks of the traces, in maze then chunk order: chunks (N, L), the maze of each (N,) and its
    index in the trace (N,)."""
    chunks, owner, index = [], [], []
    for i, t in enumerate(data.traces):
        for j in range(len(t) // L):
            chunks.append(t[j * L:(j + 1) * L])
            owner.append(i)
            index.append(j)
    return (np.array(chunks, dtype=np.int64).reshape(-1, L), np.array(owner, dtype=np.int64),
            np.array(index, dtype=np.int64))


def sequence(data: MazeData, i: int, arm: str, m: int, L: int, latent0: int) -> list[int]:
    """The training sequence of maze ``i`` for ``arm``; for ``mixed``, the first ``m`` chunks as latent codes."""
    prompt = data.prompts[i].tolist()
    if arm == "answer":
        return prompt + data.plans[i]
    trace = data.traces[i]
    if arm == "trace" or m == 0:
        return prompt + [TRACE] + trace + data.plans[i]
    latent = (data.codes[i][:m].reshape(-1) + latent0).tolist()
    return prompt + [TRACE, BOL] + latent + [EOL] + trace[m * L:] + data.plans[i]


def pad_batch(seqs: list[list[int]], prompt_len: int) -> Batch:
    T = max(len(s) for s in seqs)
    x = torch.full((len(seqs), T), PAD, dtype=torch.long)
    for r, s in enumerate(seqs):
        x[r, : len(s)] = torch.tensor(s)
    tokens, targets = x[:, :-1], x[:, 1:]
    mask = targets != PAD
    mask[:, : prompt_len - 1] = False  # the loss counts on everything after the prompt
    return Batch(tokens, targets, mask)


def draw_m(rng: np.random.Generator, n_full: int, mix_tokens: tuple[int, ...], L: int) -> int:
    """Chunks made latent for one example: m text tokens drawn uniformly from ``mix_tokens``, rounded down to whole
    chunks of ``L``, capped at the trace's ``n_full`` full chunks."""
    return min(int(mix_tokens[int(rng.integers(len(mix_tokens)))]) // L, n_full)


def iid_rows(seed: int, stream: int, step: int, n: int, size: int) -> tuple[np.random.Generator, np.ndarray]:
    """Training batch ``step`` of ``stream``: ``size`` independent uniform draws (with replacement) of ``n`` rows, and
    the generator that drew them (for any further per-row draws). A pure function of (seed, stream, step), so a
    resumed run sees the same batches; no sorting or windows, so every batch is an i.i.d. sample."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, stream, step]))
    return rng, rng.integers(0, n, size=size)


def model_batch(data: MazeData, arm: str, seed: int, stream: int, step: int, batch_size: int,
                mix_tokens: tuple[int, ...], L: int, latent0: int, prompt_len: int) -> Batch:
    """One i.i.d. training batch of ``arm``: every row an independent uniform draw of a maze (and, for ``mixed``, of
    its m by :func:`draw_m`)."""
    rng, idx = iid_rows(seed, stream, step, len(data.mazes), batch_size)
    seqs = [sequence(data, int(i), arm, draw_m(rng, len(data.codes[i]), mix_tokens, L) if arm == "mixed" else 0,
                     L, latent0) for i in idx]
    return pad_batch(seqs, prompt_len)


def teacher_forced_metrics(model: TinyTransformer, b: Batch) -> dict[str, float]:
    """Loss per token after the prompt, and on the plan alone (path and EOS) given the true trace before it;
    ``val_plan_exact``: share of rows whose whole plan is the argmax at every position (teacher forced)."""
    device = next(model.parameters()).device
    tokens, targets, mask = b.tokens.to(device), b.targets.to(device), b.mask.to(device)
    logits = model(tokens)
    ce = torch.nn.functional.cross_entropy(logits.transpose(1, 2), targets, reduction="none")
    plan_at = (tokens == PLAN).float().argmax(1, keepdim=True)
    plan = mask & (torch.arange(tokens.shape[1], device=device)[None] >= plan_at)
    right = (logits.argmax(-1) == targets) | ~plan
    return {"val_loss": float(ce[mask].mean()), "val_plan_loss": float(ce[plan].mean()),
            "val_plan_exact": float(right.all(1).float().mean())}


# ----------------------------------------------------------------------------------------------
# Generation and evaluation
# ----------------------------------------------------------------------------------------------
def evaluate_arm(model: TinyTransformer, task: MazeTask, data: MazeData, max_len: int, batch_size: int,
                 latent0: int, samples: int = 10, temperature: float = 1.0, top_k: int | None = 10, seed: int = 0,
                 progress: bool = True) -> dict[str, Any]:
    """1-Feasible-``samples`` as the paper: ``samples`` continuations per held-out maze (temperature 1, top-k 10,
    KV-cached generation); a maze counts as solved when any sample's plan passes the validator, and as solved
    optimally when any valid plan is as short as the solver's. Also the greedy plan (one more continuation)."""
    model.eval()
    device = next(model.parameters()).device
    gen = torch.Generator(device="cpu").manual_seed(seed)
    per_batch = max(1, batch_size // (samples + 1))
    rows = []
    for s in tqdm(range(0, len(data.mazes), per_batch), desc="generate", leave=False, disable=not progress):
        prompts = torch.from_numpy(data.prompts[s:s + per_batch])
        sampled = model.generate(prompts.repeat_interleave(samples, 0).to(device), max_len, eos=EOS, pad=PAD,
                                 temperature=temperature, top_k=top_k, generator=gen).cpu()
        greedy = model.generate(prompts.to(device), max_len, eos=EOS, pad=PAD).cpu()
        for r in range(prompts.shape[0]):
            maze = data.mazes[s + r]
            outs = [_judge(task, maze, sampled[r * samples + j, task.prompt_len:].tolist(), latent0)
                    for j in range(samples)]
            g = _judge(task, maze, greedy[r, task.prompt_len:].tolist(), latent0)
            ok = [o for o in outs if o["valid"]]
            # where a text-trace model fails: its greedy trace (when all text) against the solver's, and the plan
            # that trace determines (parent pointers read back from the goal) against the validator
            text = g["tokens"][1:g["trace_len"]] if g["tokens"][:1] == [TRACE] and g["n_latent"] == 0 else None
            implied = task.plan_from_trace(maze, text) if text else None
            rows.append({
                "feasible": bool(ok), "optimal": any(o["optimal"] for o in outs), "greedy_valid": g["valid"],
                "greedy_text_trace": text is not None, "greedy_trace_exact": text == data.traces[s + r],
                "greedy_trace_implies_valid_plan": implied is not None and validate_path(maze, implied)[0],
                "share_valid": len(ok) / samples,
                "trace_len": float(np.mean([o["trace_len"] for o in outs])),
                "valid_trace_len": float(np.mean([o["trace_len"] for o in ok])) if ok else None,
                "n_latent": float(np.mean([o["n_latent"] for o in outs])),
                "reason": g["reason"], "path": g["path"], "tokens": g["tokens"],
                "sample_reasons": [o["reason"] for o in outs]})
    n = len(rows)

    def rate(key: str) -> tuple[float, float]:
        p = sum(r[key] for r in rows) / n
        return p, math.sqrt(p * (1 - p) / n)

    reasons: dict[str, int] = {}
    for r in rows:
        for why in r["sample_reasons"]:
            if why != "ok":
                key = _reason_kind(why)
                reasons[key] = reasons.get(key, 0) + 1
    (feas, feas_se), (opt, opt_se), (greedy_rate, greedy_se) = rate("feasible"), rate("optimal"), rate("greedy_valid")
    return {
        "feasible": feas, "feasible_se": feas_se, "optimal": opt, "optimal_se": opt_se,
        "greedy_solve_rate": greedy_rate, "greedy_solve_se": greedy_se, "n": n, "samples": samples,
        "temperature": temperature, "top_k": top_k,
        "mean_sample_valid": float(np.mean([r["share_valid"] for r in rows])),
        "greedy_text_trace": rate("greedy_text_trace")[0],
        "greedy_trace_exact": rate("greedy_trace_exact")[0],
        "greedy_trace_implies_valid_plan": rate("greedy_trace_implies_valid_plan")[0],
        "mean_trace_len": float(np.mean([r["trace_len"] for r in rows])),
        "trace_len_quantiles": [float(q) for q in np.quantile([r["trace_len"] for r in rows], [0.1, 0.5, 0.9])],
        "mean_latent_tokens": float(np.mean([r["n_latent"] for r in rows])),
        "failure_reasons": dict(sorted(reasons.items(), key=lambda kv: -kv[1])),
        "rows": rows,
    }


def _judge(task: MazeTask, maze: Maze, gen: list[int], latent0: int) -> dict[str, Any]:
    """One generated continuation: its plan checked by the validator, its trace length (tokens before PLAN, latent
    codes and their markers included)."""
    if EOS in gen:
        gen = gen[: gen.index(EOS) + 1]
    gen = [t for t in gen if t != PAD]
    path = task.parse_plan(gen)
    ok, why = validate_path(maze, path) if path is not None else (False, "no well-formed plan")
    before = gen.index(PLAN) if PLAN in gen else len(gen)
    return {"valid": ok, "optimal": ok and len(path) == len(maze.path), "reason": why, "path": path,
            "trace_len": before, "n_latent": sum(t >= latent0 for t in gen[:before]), "tokens": gen}


# ----------------------------------------------------------------------------------------------
# The study
# ----------------------------------------------------------------------------------------------
class TokenAssortedStudy(Study):
    name = "token-assorted"
    title = "Token Assorted: latent (VQ-VAE) codes for the first chunks of a maze search trace"
    paper = "Su et al., Token Assorted: Mixing Latent and Text Tokens for Improved Language Model Reasoning, arXiv 2502.03275"
    config_cls = TokenAssortedConfig
    tiny = ("task.size=5", "task.n_keys=1", "n_train=60", "n_eval=6", "samples=3",
            "vqvae.d_model=16", "vqvae.n_heads=2", "vqvae.codebook_size=16",
            "vq_train.steps=4", "vq_train.eval_every=2", "vq_train.checkpoint_every=4", "vq_train.progress=false",
            "model.n_layers=1", "model.d_model=16", "model.n_heads=2",
            "train.steps=4", "train.warmup_steps=1", "train.eval_every=2", "train.checkpoint_every=4",
            "train.progress=false")

    def quick_config(self) -> TokenAssortedConfig:
        """5x5 mazes, one key; VQ-VAE L = 8, r = 4 (two codes per chunk), 256 codes; 2-layer d=64 models, 1,500
        steps of 32 each; 1-Feasible-10 on 200 held-out mazes. The pilot in docs/studies/token-assorted.md shows the
        answer-only model still solving most mazes this small; the smallest maze it measured where search is
        needed (9x9) makes text-trace steps about five times dearer, beyond a quick run's budget."""
        return TokenAssortedConfig(
            task=MazeTaskConfig(size=5, n_keys=1, wall_density=0.2),
            n_train=5000, n_eval=200,
            vqvae=VQVAEConfig(chunk_len=8, compression=4, codebook_size=256, d_model=64, n_heads=4, n_layers=1,
                              beta=0.25, reset_dead_every=100),
            vq_train=TrainConfig(steps=800, optimizer="adam", lr=1e-3, betas=(0.9, 0.999), weight_decay=0.0,
                                 eval_every=200, log_every=50, checkpoint_every=400),
            vq_batch_size=64,
            model=TinyConfig(n_layers=2, d_model=64, n_heads=4, init="gpt2", act_fn="gelu"),
            train=TrainConfig(steps=1500, lr=1e-3, betas=(0.9, 0.98), weight_decay=0.01, warmup_steps=100,
                              schedule="cosine", min_lr_ratio=0.1, grad_clip=1.0, eval_every=250, log_every=50,
                              checkpoint_every=500),
            batch_size=32,
        )

    def control_config(self, cfg: TokenAssortedConfig) -> TokenAssortedConfig:
        """Learning switched off: every trained component (VQ-VAE and the three models) at lr 1e-9, so the models
        stay at their random initialisation."""
        return cfg.replace(train=cfg.train.replace(lr=1e-9), vq_train=cfg.vq_train.replace(lr=1e-9))

    def execute(self, cfg: TokenAssortedConfig, out: Path, quick: bool, resume: bool) -> Result:
        if cfg.train.device.startswith("cuda") or cfg.vq_train.device.startswith("cuda"):
            torch.backends.cuda.matmul.allow_tf32 = True  # TF32 matmuls on the device machine
            torch.backends.cudnn.allow_tf32 = True
        task = MazeTask(cfg.task, seed=cfg.seed)
        bar = not cfg.train.progress
        train_data = build_data(task, [task.maze(i) for i in tqdm(range(cfg.n_train), desc="mazes", leave=False,
                                                                   disable=bar)])
        eval_data = build_data(task, task.eval_mazes(cfg.n_eval))
        V = len(task.vocab)
        L = cfg.vqvae.chunk_len
        latent0 = V

        # 2. VQ-VAE on trace chunks (only the mixed model needs it)
        vq_metrics: dict[str, Any] = {}
        stages: dict[str, Any] = {}
        if "mixed" in cfg.arms:
            vq, vq_metrics = self._train_vqvae(cfg, task, train_data, eval_data, out / "vqvae", resume)
            atomic_write_text(out / "vqvae" / "eval.json", json.dumps(vq_metrics) + "\n")
            for data in (train_data, eval_data):
                chunks, owner, _ = chunk_table(data, L)
                codes = _encode_all(vq, chunks)
                data.codes = [codes[owner == i] for i in range(len(data.mazes))]

        # 3-4. three models
        n_ctx = max(1 + len(p) + len(t) + len(q) for d in (train_data, eval_data)
                    for p, t, q in zip(d.prompts, d.traces, d.plans)) + 8  # room for a slightly longer generation
        results, histories, seconds = {}, {}, {}
        if vq_metrics:
            stages["vqvae"] = vq_metrics.pop("stage")
        for arm_id, arm in enumerate(cfg.arms):
            d_vocab = V + (cfg.vqvae.codebook_size if arm == "mixed" else 0)
            model_cfg = cfg.model.replace(d_vocab=d_vocab, n_ctx=n_ctx)
            torch.manual_seed(cfg.seed)
            model = TinyTransformer(model_cfg)
            eval_idx = list(range(min(64, cfg.n_eval)))

            def m_for(rng: np.random.Generator, data: MazeData, i: int, arm: str) -> int:
                return draw_m(rng, len(data.codes[i]), cfg.mix_tokens, L) if arm == "mixed" else 0

            def batch_fn(step: int, arm: str = arm, arm_id: int = arm_id) -> Batch:
                return model_batch(train_data, arm, cfg.seed, 1 + arm_id, step, cfg.batch_size, cfg.mix_tokens, L,
                                   latent0, task.prompt_len)

            def val_loss(m: TinyTransformer, step: int, arm: str = arm) -> dict[str, Any]:
                rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 99]))
                seqs = [sequence(eval_data, i, arm, m_for(rng, eval_data, i, arm), L, latent0) for i in eval_idx]
                return teacher_forced_metrics(m, pad_batch(seqs, task.prompt_len))

            # the mixed arm learns from the VQ-VAE's codes: a retrained VQ-VAE makes its checkpoint stale
            codes_key = (fingerprint(np.concatenate(train_data.codes).astype(np.int64).tobytes())
                         if arm == "mixed" else None)
            result = train(model, cfg.train.seeded(cfg.seed), batch_fn, out / arm, eval_fn=val_loss,
                           code=ARM_CODE, data=codes_key, resume=resume, meta={"task": cfg.task.to_dict(), "task_version": task.version,
                                                "model": model_cfg.to_dict(), "arm": arm, "n_train": cfg.n_train,
                                                "batch_size": cfg.batch_size, "vqvae": cfg.vqvae.to_dict(),
                                                "mix_tokens": list(cfg.mix_tokens)})
            histories[arm] = result.evals
            stages[arm] = result.stage
            seconds[arm] = round(result.seconds, 1)
            results[arm] = evaluate_arm(model, task, eval_data, n_ctx, cfg.eval_batch_size, latent0,
                                        samples=cfg.samples, temperature=cfg.temperature, top_k=cfg.top_k,
                                        seed=cfg.seed, progress=not bar)
            atomic_write_text(out / arm / "generations.json",
                              json.dumps([{k: v for k, v in r.items()} for r in results[arm]["rows"][:50]]) + "\n")
            # each arm's metrics as soon as it is evaluated (a run stopped later keeps them; summary.json has them all)
            atomic_write_text(out / arm / "eval.json", json.dumps(
                {"train_seconds": seconds[arm], **{k: v for k, v in results[arm].items() if k != "rows"}}) + "\n")

        solver_trace = np.array([1 + len(t) for t in eval_data.traces], dtype=float)
        metrics = {
            "vqvae": vq_metrics,
            "models": {a: {k: v for k, v in r.items() if k != "rows"} for a, r in results.items()},
            "solver_trace_len": float(solver_trace.mean()),
            "solver_path_len": float(np.mean([len(m.path) for m in eval_data.mazes])),
            "solve_by_difficulty": _by_difficulty(results, solver_trace),
            "n_ctx": n_ctx,
            "d_vocab_text": V,
            "final_val_loss": {a: h[-1]["val_loss"] for a, h in histories.items() if h},
            # the plan given the solver's own trace (teacher forced): planning itself vs generating the trace
            "final_val_plan_loss": {a: h[-1]["val_plan_loss"] for a, h in histories.items() if h},
            "final_val_plan_exact_teacher_forced": {a: h[-1]["val_plan_exact"] for a, h in histories.items() if h},
            "train_seconds": seconds,
        }
        if "trace" in results and "mixed" in results:
            metrics["common_solved"] = _common_lengths(results["trace"], results["mixed"])
        claims = self._claims(results, metrics.get("common_solved"))
        figures = self._figures(out, task, eval_data, results, histories, solver_trace, vq_metrics)
        return Result(claims, metrics, figures, task.version, stages=stages)

    @staticmethod
    def _train_vqvae(cfg: TokenAssortedConfig, task: MazeTask, train_data: MazeData, eval_data: MazeData,
                     run_dir: Path, resume: bool) -> tuple[VQVAE, dict[str, Any]]:
        # The decoder's condition: one pooled vector of the maze (the prompt); no chunk index, no cross-attention.
        L, V = cfg.vqvae.chunk_len, len(task.vocab)
        chunks, owner, index = chunk_table(train_data, L)
        if len(chunks) == 0:
            raise ConfigError(f"vqvae.chunk_len ({L}) is longer than every trace; lower it")
        e_chunks, e_owner, e_index = chunk_table(eval_data, L)
        P = task.prompt_len
        vq_cfg = cfg.vqvae.replace(d_vocab=V, prompt_len=P)
        seqs = torch.from_numpy(np.concatenate([train_data.prompts[owner], chunks], axis=1))
        e_seqs = torch.from_numpy(np.concatenate([eval_data.prompts[e_owner], e_chunks], axis=1))

        def batch_fn(step: int) -> Batch:  # i.i.d. chunks
            x = seqs[torch.from_numpy(iid_rows(cfg.seed, 0, step, len(seqs), cfg.vq_batch_size)[1])]
            return Batch(x, x[:, P:])

        def recon(m: VQVAE, x: torch.Tensor, idx: np.ndarray | None = None) -> dict[str, Any]:
            """Reconstruction with the true codes and with the codes shuffled across chunks (a fixed permutation)."""
            device = next(m.parameters()).device
            codes = torch.cat([m.encode(x[s:s + 1024, P:].to(device)).cpu() for s in range(0, len(x), 1024)])
            perm = torch.from_numpy(np.random.default_rng(np.random.SeedSequence([cfg.seed, 7])).permutation(len(x)))
            out: dict[str, Any] = {}
            for name, c in (("", codes), ("shuffled_", codes[perm])):
                right = torch.cat([(m.decode(c[s:s + 1024].to(device), x[s:s + 1024, :P].to(device)).argmax(-1).cpu()
                                    == x[s:s + 1024, P:]) for s in range(0, len(x), 1024)])
                out[f"{name}token_acc"] = float(right.float().mean())
                out[f"{name}chunk_exact"] = float(right.all(1).float().mean())
                if not name and idx is not None:
                    ex = right.all(1).float().numpy()
                    out["chunk_exact_by_index"] = [float(ex[idx == j].mean()) for j in range(min(int(idx.max()) + 1, 40))
                                                   if (idx == j).sum() >= 5]
            out.update(codebook_usage(codes, vq_cfg.codebook_size))
            out["code_counts"] = torch.bincount(codes.flatten(), minlength=vq_cfg.codebook_size).tolist()
            return out

        torch.manual_seed(cfg.seed)
        vq = VQVAE(vq_cfg)
        result = train(vq, cfg.vq_train.seeded(cfg.seed), batch_fn, run_dir, code=VQ_CODE,
                       eval_fn=lambda m, step: {f"val_{k}": v for k, v in recon(m, e_seqs[:512]).items()
                                                if isinstance(v, float)},
                       resume=resume, meta={"task": cfg.task.to_dict(), "task_version": task.version,
                                            "vqvae": vq_cfg.to_dict(), "n_train": cfg.n_train,
                                            "batch_size": cfg.vq_batch_size})
        vq.eval()
        with torch.no_grad():
            held, tr = recon(vq, e_seqs, e_index), recon(vq, seqs[:4096])
        tr.pop("code_counts")
        return vq, {"eval": held, "train": tr, "n_train_chunks": len(seqs), "n_eval_chunks": len(e_seqs),
                    "history": result.evals, "seconds": round(result.seconds, 1), "stage": result.stage}

    # -- claims ---------------------------------------------------------------------------------
    @staticmethod
    def _claims(r: dict[str, dict[str, Any]], common: dict[str, Any] | None) -> list[Claim]:
        def summ(a: str) -> dict[str, Any]:
            return {"feasible10": r[a]["feasible"], "se": r[a]["feasible_se"], "optimal10": r[a]["optimal"],
                    "mean_trace_len": r[a]["mean_trace_len"], "greedy": r[a]["greedy_solve_rate"]}

        def diff_se(a: str, b: str) -> float:
            return math.sqrt(r[a]["feasible_se"] ** 2 + r[b]["feasible_se"] ** 2)

        claims = []
        traced = [a for a in ("trace", "mixed") if a in r]
        if "answer" in r and traced:
            rules = [greater(r[a]["feasible"] - r["answer"]["feasible"], SE_MULT * diff_se(a, "answer"),
                             what=f"{a} - answer-only 1-Feasible-10", than=f"{SE_MULT:g} SE of the difference")
                     for a in traced]
            claims.append(Claim.judged(
                "answer_only_below_trace_models",
                "Answer-only (Sol-Only) solves fewer held-out mazes than the models trained on search traces "
                "(1-Feasible-10)",
                paper_value={k: PAPER_FEASIBLE[k] for k in ("sol_only", "cot", "latent")},
                measured={a: summ(a) for a in ["answer"] + traced},
                rule=all_of(*rules), source="[secondary]"))
        if "trace" in r and "mixed" in r:
            gap = r["mixed"]["feasible"] - r["trace"]["feasible"]
            se = diff_se("mixed", "trace")
            claims.append(Claim.judged(
                "mixed_at_least_trace",
                "The mixed latent/text model solves at least as many mazes as the text-trace (CoT) model "
                "(1-Feasible-10)",
                paper_value={k: PAPER_FEASIBLE[k] for k in ("cot", "latent")},
                measured={"trace": summ("trace"), "mixed": summ("mixed"), "gap": gap, "se_of_gap": se},
                rule=all_of(at_least(gap, -SE_MULT * se, what=f"mixed - text-trace 1-Feasible-10 (-{SE_MULT:g} SE of "
                                                             "the difference)"),
                            at_least(r["trace"]["feasible"], MIN_TRACE_SOLVE,
                                     what="text-trace 1-Feasible-10 (else the comparison is vacuous)")),
                source="[secondary]"))
            c = common or {}
            claims.append(Claim.judged(
                "mixed_traces_shorter_on_common_mazes",
                "On the mazes both trace models solve, the mixed model's valid traces are markedly shorter",
                paper_value={"trace_tokens": {k: PAPER_TRACE_TOKENS[k] for k in ("cot", "latent")},
                             "ratio": PAPER_TRACE_TOKENS["latent"] / PAPER_TRACE_TOKENS["cot"]},
                measured=c,
                rule=all_of(at_least(c.get("n", 0), MIN_COMMON, what="mazes both solve"),
                            at_most(c.get("ratio"), LENGTH_RATIO_MAX,
                                    what="mixed / text-trace mean valid trace length on them")),
                source="[secondary]"))
        return claims

    # -- figures --------------------------------------------------------------------------------
    @staticmethod
    def _figures(out: Path, task: MazeTask, eval_data: MazeData, r: dict[str, dict[str, Any]],
                 histories: dict[str, list[dict[str, Any]]], solver_trace: np.ndarray,
                 vq_metrics: dict[str, Any]) -> list[str]:
        plt = pyplot()
        names = []
        colours = {"answer": "tab:gray", "trace": "tab:blue", "mixed": "tab:red"}
        title = f"{task.cfg.size}x{task.cfg.size}, {task.cfg.n_keys} key(s), {len(eval_data.mazes)} held-out mazes"
        fig, ax = plt.subplots(figsize=(6, 4.5))
        for a, res in r.items():
            ax.errorbar(res["mean_trace_len"], res["feasible"], yerr=res["feasible_se"], fmt="o", ms=9,
                        color=colours[a], capsize=4, label=f"{a}: {res['feasible']:.2f} at {res['mean_trace_len']:.1f} tok")
        ax.axvline(solver_trace.mean(), color="gray", ls="--", lw=1,
                   label=f"solver's text trace ({solver_trace.mean():.1f} tok)")
        ax.set(xlabel="mean generated trace length (tokens before PLAN)", ylabel="1-Feasible-10 (validator)",
               ylim=(-0.05, 1.05), title=title)
        ax.legend(fontsize=8)
        names.append(save_figure(fig, out, "solve_vs_length.png"))

        # solve rate vs difficulty (terciles of the solver's trace length)
        diff = _by_difficulty(r, solver_trace)
        fig, ax = plt.subplots(figsize=(6, 4.5))
        for a, d in diff["arms"].items():
            ax.errorbar(range(len(d)), [x[0] for x in d], yerr=[x[1] for x in d], fmt="o-", color=colours[a],
                        capsize=3, label=a)
        ax.set_xticks(range(len(diff["bins"])), [f"{lo:.0f}-{hi:.0f}" for lo, hi in diff["bins"]])
        ax.set(xlabel="solver's trace length (tokens), terciles of the held-out mazes", ylabel="1-Feasible-10",
               ylim=(-0.05, 1.05), title=title)
        ax.legend()
        names.append(save_figure(fig, out, "solve_vs_difficulty.png"))

        # trace length distributions
        fig, ax = plt.subplots(figsize=(6, 4))
        hi = max([float(solver_trace.max())] + [max(row["trace_len"] for row in res["rows"]) for res in r.values()])
        bins = np.linspace(0, hi + 1, 40)
        ax.hist(solver_trace, bins=bins, histtype="step", color="black", ls="--", label="solver's text trace")
        for a, res in r.items():
            if a != "answer":
                ax.hist([row["trace_len"] for row in res["rows"]], bins=bins, histtype="step", lw=2, color=colours[a],
                        label=f"{a} (mean over the {res['samples']} samples per maze)")
        ax.set(xlabel="trace length (tokens before PLAN)", ylabel="held-out mazes", title="Trace lengths")
        ax.legend(fontsize=8)
        names.append(save_figure(fig, out, "trace_lengths.png"))

        if vq_metrics:
            counts = np.sort(np.array(vq_metrics["eval"]["code_counts"]))[::-1]
            fig, ax = plt.subplots(figsize=(6, 4))
            ax.bar(range(len(counts)), counts, width=1.0, color="tab:red")
            e = vq_metrics["eval"]
            ax.set(yscale="log", xlabel="code (sorted by use)", ylabel="held-out chunks' codes",
                   title=f"Codebook usage: {e['used']} of {len(counts)} used, perplexity {e['perplexity']:.1f}\n"
                         f"exact chunks {e['chunk_exact']:.2f} (codes shuffled: {e['shuffled_chunk_exact']:.2f})")
            names.append(save_figure(fig, out, "codebook_usage.png"))

        # an example maze: the first held-out maze the mixed (else trace) model solved greedily, each model's path
        key = "mixed" if "mixed" in r else next(iter(r))
        idx = next((i for i, row in enumerate(r[key]["rows"]) if row["greedy_valid"]), 0)
        maze = eval_data.mazes[idx]
        panels = [("solver", maze.path, True, "shortest path")] + [
            (a, res["rows"][idx]["path"], res["rows"][idx]["greedy_valid"], res["rows"][idx]["reason"])
            for a, res in r.items()]
        fig, axes = plt.subplots(1, len(panels), figsize=(3.3 * len(panels), 4.2))
        for ax, (name, path, ok, why) in zip(np.atleast_1d(axes), panels):
            _draw_maze(ax, maze, path, ok)
            ax.set_title(f"{name} (greedy): {'valid' if ok else 'invalid'}\n{why}"[:60], fontsize=8)
        names.append(save_figure(fig, out, "example_maze.png"))

        fig, ax = plt.subplots(figsize=(6, 4))
        for a, h in histories.items():
            ax.plot([e["step"] for e in h], [e["val_loss"] for e in h], "o-", color=colours[a], label=a)
        ax.set(xlabel="step", ylabel="held-out loss per token", yscale="log", title="Training")
        ax.legend()
        names.append(save_figure(fig, out, "training.png"))
        return names


def _by_difficulty(r: dict[str, dict[str, Any]], solver_trace: np.ndarray) -> dict[str, Any]:
    """1-Feasible-10 (and its SE) per tercile of the solver's trace length."""
    edges = np.quantile(solver_trace, [0, 1 / 3, 2 / 3, 1])
    which = np.clip(np.searchsorted(edges[1:-1], solver_trace, side="right"), 0, 2)
    arms = {}
    for a, res in r.items():
        ok = np.array([row["feasible"] for row in res["rows"]], dtype=float)
        arms[a] = [(float(ok[which == b].mean()), float(math.sqrt(ok[which == b].mean() * (1 - ok[which == b].mean())
                                                                   / max(1, (which == b).sum()))))
                   if (which == b).any() else (float("nan"), 0.0) for b in range(3)]
    return {"bins": [(float(edges[b]), float(edges[b + 1])) for b in range(3)], "arms": arms}


def _common_lengths(trace: dict[str, Any], mixed: dict[str, Any]) -> dict[str, Any]:
    """Mean trace length of the valid samples, over the mazes both models solve (latent traces are shorter by
    construction, so only a ratio at matched success says anything)."""
    both = [(t["valid_trace_len"], m["valid_trace_len"]) for t, m in zip(trace["rows"], mixed["rows"])
            if t["feasible"] and m["feasible"]]
    if not both:
        return {"n": 0, "trace_len": None, "mixed_len": None, "ratio": None}
    t, m = float(np.mean([b[0] for b in both])), float(np.mean([b[1] for b in both]))
    return {"n": len(both), "trace_len": t, "mixed_len": m, "ratio": m / t if t > 0 else None}


def _draw_maze(ax: Any, maze: Maze, path: list[tuple[int, int]] | None, ok: bool) -> None:
    from matplotlib.colors import ListedColormap

    n, k = maze.size, maze.n_keys
    colours = ["white", "black", "limegreen", "gold"] + ["tab:red", "tab:blue", "tab:purple", "tab:orange"][:k] * 2
    ax.imshow(maze.grid, cmap=ListedColormap(colours), vmin=-0.5, vmax=len(colours) - 0.5)
    for r in range(n):
        for c in range(n):
            kc, dc = maze.key_colour((r, c)), maze.door_colour((r, c))
            label = "S" if (r, c) == maze.start else "G" if (r, c) == maze.goal else (
                f"k{kc}" if kc is not None else f"D{dc}" if dc is not None else "")
            if label:
                ax.text(c, r, label, ha="center", va="center", fontsize=9, color="black" if label in "SG" else "white",
                        weight="bold")
    if path:
        ys, xs = zip(*path)
        ax.plot(xs, ys, "-", color="tab:green" if ok else "tab:red", lw=2.5, alpha=0.8)
    ax.set_xticks(np.arange(-0.5, n), [])
    ax.set_yticks(np.arange(-0.5, n), [])
    ax.grid(color="lightgray", lw=0.5)
    ax.tick_params(length=0)


def _reason_kind(reason: str) -> str:
    """The validator's reason without its cells: 'step 3 enters a wall at (2, 1)' -> 'enters a wall'."""
    for kind in ("starts at", "jumps", "leaves the grid", "enters a wall", "without key", "ends at"):
        if kind in reason:
            return {"starts at": "wrong start", "ends at": "does not reach the goal", "without key": "door without key",
                    "jumps": "teleport"}.get(kind, kind)
    return reason


@torch.no_grad()
def _encode_all(vq: VQVAE, chunks: np.ndarray) -> np.ndarray:
    if len(chunks) == 0:
        return np.zeros((0, vq.cfg.codes_per_chunk), dtype=np.int64)
    device = next(vq.parameters()).device
    vq.eval()
    return torch.cat([vq.encode(torch.from_numpy(chunks[s:s + 2048]).to(device)).cpu()
                      for s in range(0, len(chunks), 2048)]).numpy()
