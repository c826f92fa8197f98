"""Token Assorted: mixing latent and text tokens in a reasoning trace (Su et al. 2025, arXiv 2502.03275).

What this study does, in order (the maze setting of the paper, trained from scratch):

1. **Data** (``lmlab.tasks.maze``, version ``maze/1``): ``n_train`` training and ``n_eval`` held-out
   keys-finding mazes, each with the solver's A* search trace (text tokens) and its shortest path.
2. **VQ-VAE** (``lmlab.nn.vqvae``): trained with the lab's training loop on the chunks of ``L``
   trace tokens of the training mazes, the decoder conditioned on the maze (the prompt) and on the chunk's index
   in the trace. Reported:
   reconstruction accuracy (token and whole chunk) and codebook usage on held-out chunks.
3. **Three language models** (``TinyTransformer``), trained from scratch with the same loop, loss on
   everything after the prompt:

   - ``answer``: ``BOS grid PLAN path EOS`` (the paper's Sol-Only);
   - ``trace``: ``BOS grid TRACE trace PLAN path EOS`` (CoT);
   - ``mixed``: the first m chunks of the trace replaced by their codes,
     ``BOS grid TRACE BOL z_1 .. z_{m L / r} EOL trace[m L:] PLAN path EOS``, with m drawn afresh for
     every example from Uniform{0, .., min(max_latent_chunks, full chunks)} (left-to-right prefix
     replacement, a single stage, no curriculum). The vocabulary is extended by the codebook.
4. **Evaluation**: batched greedy generation (``TinyTransformer.generate``) from ``BOS grid`` on the held-out mazes; the path after
   ``PLAN`` is checked by :func:`lmlab.tasks.maze.validate_path` (never compared with the solver's
   string). Solve rate and the generated trace length (tokens before ``PLAN``, latent tokens and
   their markers counted) for each model.

The mixing rule: the spec reports m drawn per example from {0, 72, 128, 160, 192, 224, 256} tokens
(72 is not a multiple of 16, so the rule is uncertain) and a re-implementation that draws m_max from
that set and then m uniformly; we draw m uniformly over the chunks the trace has, capped by
``max_latent_chunks`` (0: no cap). Evaluation uses greedy decoding (the paper's maze metric is
1-Feasible-10 with top-10 sampling; that is not implemented).

``--quick``: 5x5 mazes with one key and door, a VQ-VAE with L = r = 8
and 64 codes, 2-layer d=64 models for 1,200 steps. The default config is the paper-like setting
(a GPU job, not run here): 9x9 mazes with two keys, L = r = 16, 1,024 codes, 100k VQ-VAE steps
(Adam, lr 1e-5, batch 32 as in the paper), and GPT-2-sized (12 layers, width 768, 12 heads) models.
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
from lmlab.io import atomic_write_text
from lmlab.nn import TinyConfig, TinyTransformer
from lmlab.nn.vqvae import VQVAE, VQVAEConfig, codebook_usage
from lmlab.studies.base import Claim, Result, Study, all_of, at_least, at_most, greater, pyplot, save_figure
from lmlab.tasks.maze import BOL, EOL, EOS, PAD, PLAN, TRACE, Maze, MazeTask, MazeTaskConfig, validate_path
from lmlab.train import Batch, TrainConfig, train

ARMS = ("answer", "trace", "mixed")

# Claim thresholds (each rule's words are produced from these by lmlab.claims)
LENGTH_RATIO_MAX = 0.8  # mixed / text-trace mean generated trace length: "markedly shorter"
SE_MULT = 2.0  # solve-rate differences are judged in standard errors of the difference
MIN_TRACE_SOLVE = 0.1  # the text-trace model must solve this share, else "equal solve rate" is vacuous
# The paper's numbers (maze setting; 1-Feasible-10 in %)
PAPER_TRACE_TOKENS = {"cot": 1312, "latent": 374.6}
PAPER_FEASIBLE = {"sol_only": 3, "cot": 43, "latent": 62.8}


@dataclass(frozen=True)
class TokenAssortedConfig(Config):
    """Paper-like defaults (a GPU job); ``--quick`` is documented in :meth:`TokenAssortedStudy.quick_config`."""

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
    max_latent_chunks: int = 0  # cap on m (0: up to every full chunk of the trace)
    arms: tuple[str, ...] = ARMS
    eval_batch_size: int = 250
    # Training batches are random windows of the mazes sorted by trace length (less padding, so less wasted
    # compute); every maze is drawn about equally often, except the batch_size - 1 at each end.
    bucket_by_length: bool = True

    def validate(self) -> None:
        if self.n_train < 1 or self.n_eval < 1:
            raise ConfigError("TokenAssortedConfig.n_train and n_eval must be >= 1")
        if self.batch_size < 1 or self.vq_batch_size < 1 or self.eval_batch_size < 1:
            raise ConfigError("TokenAssortedConfig.batch_size, vq_batch_size and eval_batch_size must be >= 1")
        if self.max_latent_chunks < 0:
            raise ConfigError("TokenAssortedConfig.max_latent_chunks must be >= 0 (0: no cap)")
        bad = [a for a in self.arms if a not in ARMS]
        if bad or not self.arms or len(set(self.arms)) != len(self.arms):
            raise ConfigError(f"TokenAssortedConfig.arms must be distinct names from {', '.join(ARMS)}, got {self.arms}")


# ----------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------
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


def draw_m(rng: np.random.Generator, n_full: int, cap: int) -> int:
    hi = n_full if cap == 0 else min(cap, n_full)
    return int(rng.integers(0, hi + 1))


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
            rows.append({
                "feasible": bool(ok), "optimal": any(o["optimal"] for o in outs), "greedy_valid": g["valid"],
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

    def quick_config(self) -> TokenAssortedConfig:
        """5x5 mazes, one key; L = r = 8, 64 codes; 2-layer d=64 models, 1,200 steps each."""
        return TokenAssortedConfig(
            task=MazeTaskConfig(size=5, n_keys=1, wall_density=0.2),
            n_train=5000, n_eval=200,
            vqvae=VQVAEConfig(chunk_len=8, compression=8, codebook_size=64, d_model=64, n_heads=4, n_layers=1,
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

    def execute(self, cfg: TokenAssortedConfig, out: Path, quick: bool, resume: bool) -> Result:
        task = MazeTask(cfg.task, seed=cfg.seed)
        bar = not cfg.train.progress
        train_data = build_data(task, [task.maze(i) for i in tqdm(range(cfg.n_train), desc="mazes", leave=False,
                                                                   disable=bar)])
        eval_data = build_data(task, task.eval_mazes(cfg.n_eval))
        V = len(task.vocab)
        L = cfg.vqvae.chunk_len

        # 2. VQ-VAE on trace chunks
        vq, vq_metrics = self._train_vqvae(cfg, task, train_data, eval_data, out / "vqvae", resume)
        latent0 = V
        for data in (train_data, eval_data):
            chunks, owner, _ = chunk_table(data, L)
            codes = _encode_all(vq, chunks)
            data.codes = [codes[owner == i] for i in range(len(data.mazes))]

        # 3-4. three models
        n_ctx = max(1 + len(p) + len(t) + len(q) for d in (train_data, eval_data)
                    for p, t, q in zip(d.prompts, d.traces, d.plans)) + 8  # room for a slightly longer generation
        results, histories, seconds = {}, {}, {}
        by_length = np.argsort([len(t) for t in train_data.traces], kind="stable")
        for arm_id, arm in enumerate(cfg.arms):
            d_vocab = V + (cfg.vqvae.codebook_size if arm == "mixed" else 0)
            model_cfg = cfg.model.replace(d_vocab=d_vocab, n_ctx=n_ctx)
            torch.manual_seed(cfg.seed)
            model = TinyTransformer(model_cfg)
            eval_idx = list(range(min(64, cfg.n_eval)))

            def batch_fn(step: int, arm: str = arm, arm_id: int = arm_id) -> Batch:
                rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 1 + arm_id, step]))
                if cfg.bucket_by_length:  # a random window of mazes of similar trace length: little padding
                    start = int(rng.integers(0, max(1, cfg.n_train - cfg.batch_size + 1)))
                    idx = by_length[start:start + cfg.batch_size]
                else:
                    idx = rng.integers(0, cfg.n_train, size=cfg.batch_size)
                seqs = [sequence(train_data, int(i), arm, draw_m(rng, len(train_data.codes[i]), cfg.max_latent_chunks)
                                 if arm == "mixed" else 0, L, latent0) for i in idx]
                return pad_batch(seqs, task.prompt_len)

            def val_loss(m: TinyTransformer, step: int, arm: str = arm) -> dict[str, Any]:
                rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 99]))
                seqs = [sequence(eval_data, i, arm, draw_m(rng, len(eval_data.codes[i]), cfg.max_latent_chunks)
                                 if arm == "mixed" else 0, L, latent0) for i in eval_idx]
                return teacher_forced_metrics(m, pad_batch(seqs, task.prompt_len))

            result = train(model, cfg.train.seeded(cfg.seed), batch_fn, out / arm, eval_fn=val_loss,
                           resume=resume, meta={"task": cfg.task.to_dict(), "task_version": task.version,
                                                "model": model_cfg.to_dict(), "arm": arm, "n_train": cfg.n_train,
                                                "batch_size": cfg.batch_size, "vqvae": cfg.vqvae.to_dict(),
                                                "max_latent_chunks": cfg.max_latent_chunks})
            histories[arm] = result.evals
            seconds[arm] = round(result.seconds, 1)
            results[arm] = evaluate_arm(model, task, eval_data, n_ctx, cfg.eval_batch_size, latent0, progress=not bar)
            atomic_write_text(out / arm / "generations.json", json.dumps(results[arm]["rows"][:50]) + "\n")

        solver_trace = float(np.mean([1 + len(t) for t in eval_data.traces]))
        metrics = {
            "vqvae": vq_metrics,
            "models": {a: {k: v for k, v in r.items() if k != "rows"} for a, r in results.items()},
            "solver_trace_len": solver_trace,
            "solver_path_len": float(np.mean([len(m.path) for m in eval_data.mazes])),
            "n_ctx": n_ctx,
            "d_vocab_text": V,
            "final_val_loss": {a: h[-1]["val_loss"] for a, h in histories.items() if h},
            # the plan given the solver's own trace (teacher forced): planning itself vs generating the trace
            "final_val_plan_loss": {a: h[-1]["val_plan_loss"] for a, h in histories.items() if h},
            "final_val_plan_exact_teacher_forced": {a: h[-1]["val_plan_exact"] for a, h in histories.items() if h},
            "train_seconds": seconds,
        }
        claims = self._claims(results)
        figures = self._figures(out, task, eval_data, results, histories, solver_trace)
        return Result(claims, metrics, figures, task.version)

    @staticmethod
    def _train_vqvae(cfg: TokenAssortedConfig, task: MazeTask, train_data: MazeData, eval_data: MazeData,
                     run_dir: Path, resume: bool) -> tuple[VQVAE, dict[str, Any]]:
        # The decoder's condition: the maze (the prompt) and the chunk's index in the trace (one token after the
        # text vocabulary), since a chunk's text depends on where in the search it comes.
        L, V = cfg.vqvae.chunk_len, len(task.vocab)
        chunks, owner, index = chunk_table(train_data, L)
        if len(chunks) == 0:
            raise ConfigError(f"vqvae.chunk_len ({L}) is longer than every trace; lower it")
        e_chunks, e_owner, e_index = chunk_table(eval_data, L)
        n_ids = int(max(index.max(), e_index.max() if len(e_index) else 0)) + 1
        P = task.prompt_len + 1
        vq_cfg = cfg.vqvae.replace(d_vocab=V + n_ids, prompt_len=P)
        seqs = torch.from_numpy(np.concatenate([train_data.prompts[owner], V + index[:, None], chunks], axis=1))
        e_seqs = torch.from_numpy(np.concatenate([eval_data.prompts[e_owner], V + e_index[:, None], e_chunks], axis=1))

        def batch_fn(step: int) -> Batch:
            rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 0, step]))
            x = seqs[torch.from_numpy(rng.integers(0, len(seqs), size=cfg.vq_batch_size))]
            return Batch(x, x[:, P:])

        def recon(m: VQVAE, x: torch.Tensor) -> dict[str, Any]:
            device = next(m.parameters()).device
            accs, exact, codes = [], [], []
            for s in range(0, len(x), 1024):
                b = x[s:s + 1024].to(device)
                c = m.encode(b[:, P:])
                pred = m.decode(c, b[:, :P]).argmax(-1)
                accs.append((pred == b[:, P:]).float().mean(1).cpu())
                exact.append((pred == b[:, P:]).all(1).cpu())
                codes.append(c.cpu())
            return {"token_acc": float(torch.cat(accs).mean()), "chunk_exact": float(torch.cat(exact).float().mean()),
                    **codebook_usage(torch.cat(codes), vq_cfg.codebook_size)}

        torch.manual_seed(cfg.seed)
        vq = VQVAE(vq_cfg)
        result = train(vq, cfg.vq_train.seeded(cfg.seed), batch_fn, run_dir,
                       eval_fn=lambda m, step: {f"val_{k}": v for k, v in recon(m, e_seqs[:512]).items()},
                       resume=resume, meta={"task": cfg.task.to_dict(), "task_version": task.version,
                                            "vqvae": vq_cfg.to_dict(), "n_train": cfg.n_train,
                                            "batch_size": cfg.vq_batch_size})
        vq.eval()
        with torch.no_grad():
            held, tr = recon(vq, e_seqs), recon(vq, seqs[:4096])
        return vq, {"eval": held, "train": tr, "n_train_chunks": len(seqs), "n_eval_chunks": len(e_seqs),
                    "history": result.evals, "seconds": round(result.seconds, 1)}

    # -- claims ---------------------------------------------------------------------------------
    @staticmethod
    def _claims(r: dict[str, dict[str, Any]]) -> list[Claim]:
        def summ(a: str) -> dict[str, Any]:
            return {"solve_rate": r[a]["solve_rate"], "solve_se": r[a]["solve_se"], "mean_trace_len": r[a]["mean_trace_len"],
                    "mean_gen_len": r[a]["mean_gen_len"]}

        def diff_se(a: str, b: str) -> float:
            return math.sqrt(r[a]["solve_se"] ** 2 + r[b]["solve_se"] ** 2)

        claims = []
        if "trace" in r and "mixed" in r:
            ratio = r["mixed"]["mean_trace_len"] / max(r["trace"]["mean_trace_len"], 1e-9)
            gap = r["mixed"]["solve_rate"] - r["trace"]["solve_rate"]
            se = diff_se("mixed", "trace")
            # both near zero would be "equal" vacuously: the text-trace model must solve a real share first
            claims.append(Claim.judged(
                "mixed_shorter_at_equal_or_better_solve",
                "The mixed latent/text model's traces are markedly shorter than the text-trace model's at equal or "
                "better solve rate (greedy decoding, not 1-Feasible-10)",
                paper_value={"trace_tokens": PAPER_TRACE_TOKENS,
                             "1-feasible-10": {k: PAPER_FEASIBLE[k] for k in ("cot", "latent")}},
                measured={"trace": summ("trace"), "mixed": summ("mixed"), "length_ratio": ratio, "solve_gap": gap},
                rule=all_of(at_most(ratio, LENGTH_RATIO_MAX, what="mixed / text-trace mean trace length"),
                            at_least(gap, -SE_MULT * se, what=f"mixed - text-trace solve rate (-{SE_MULT:g} SE of the "
                                                              "difference)"),
                            at_least(r["trace"]["solve_rate"], MIN_TRACE_SOLVE,
                                     what="text-trace solve rate (else the comparison is vacuous)")),
                source="[secondary]"))
            claims.append(Claim.judged(
                "mixed_solves_more_than_trace", "The mixed model solves more mazes than the text-trace (CoT) model",
                paper_value={k: PAPER_FEASIBLE[k] for k in ("cot", "latent")},
                measured={"trace": summ("trace"), "mixed": summ("mixed")},
                rule=greater(gap, SE_MULT * se, what="mixed - text-trace solve rate",
                             than=f"{SE_MULT:g} SE of the difference"),
                source="[secondary]"))
        if "trace" in r and "answer" in r:
            gap = r["trace"]["solve_rate"] - r["answer"]["solve_rate"]
            claims.append(Claim.judged(
                "trace_beats_answer_only", "Training on the search trace (CoT) solves more mazes than answer-only",
                paper_value={k: PAPER_FEASIBLE[k] for k in ("sol_only", "cot")},
                measured={"answer": summ("answer"), "trace": summ("trace")},
                rule=greater(gap, SE_MULT * diff_se("trace", "answer"), what="text-trace - answer-only solve rate",
                             than=f"{SE_MULT:g} SE of the difference"),
                source="[secondary]"))
        return claims

    # -- figures --------------------------------------------------------------------------------
    @staticmethod
    def _figures(out: Path, task: MazeTask, eval_data: MazeData, r: dict[str, dict[str, Any]],
                 histories: dict[str, list[dict[str, Any]]], solver_trace: float) -> list[str]:
        plt = pyplot()
        names = []
        colours = {"answer": "tab:gray", "trace": "tab:blue", "mixed": "tab:red"}
        fig, ax = plt.subplots(figsize=(6, 4.5))
        for a, res in r.items():
            ax.errorbar(res["mean_trace_len"], res["solve_rate"], yerr=res["solve_se"], fmt="o", ms=9,
                        color=colours[a], capsize=4, label=f"{a}: {res['solve_rate']:.2f} at {res['mean_trace_len']:.1f} tok")
        ax.axvline(solver_trace, color="gray", ls="--", lw=1, label=f"solver's text trace ({solver_trace:.1f} tok)")
        ax.set(xlabel="mean generated trace length (tokens before PLAN)", ylabel="solve rate (validator, greedy)",
               ylim=(-0.05, 1.05), title=f"{task.cfg.size}x{task.cfg.size} keys mazes, {len(eval_data.mazes)} held out")
        ax.legend(fontsize=8)
        names.append(save_figure(fig, out, "solve_vs_length.png"))

        # an example maze: the first held-out maze the mixed (else trace) model solved, each model's path
        key = "mixed" if "mixed" in r else next(iter(r))
        idx = next((i for i, row in enumerate(r[key]["rows"]) if row["solved"]), 0)
        maze = eval_data.mazes[idx]
        panels = [("solver", maze.path, True, "shortest path")] + [
            (a, res["rows"][idx]["path"], res["rows"][idx]["solved"], res["rows"][idx]["reason"]) for a, res in r.items()]
        fig, axes = plt.subplots(1, len(panels), figsize=(3.3 * len(panels), 4.2))
        for ax, (name, path, ok, why) in zip(np.atleast_1d(axes), panels):
            _draw_maze(ax, maze, path, ok)
            ax.set_title(f"{name}: {'valid' if ok else 'invalid'}\n{why}"[:60], fontsize=8)
        names.append(save_figure(fig, out, "example_maze.png"))

        fig, ax = plt.subplots(figsize=(6, 4))
        for a, h in histories.items():
            ax.plot([e["step"] for e in h], [e["val_loss"] for e in h], "o-", color=colours[a], label=a)
        ax.set(xlabel="step", ylabel="held-out loss per token", yscale="log", title="Training")
        ax.legend()
        names.append(save_figure(fig, out, "training.png"))
        return names


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
