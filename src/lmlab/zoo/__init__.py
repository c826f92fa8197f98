"""An in-house model zoo: many small TinyTransformers trained with the lab, one shared question bank.

Every zoo model shares one vocabulary, so every model can be asked every question::

    0                 PAD (after the end of a sequence; never a target)
    1 .. F            one task-prefix token per family (first token of every sequence)
    offset_f + i      token i of family f (families get disjoint id ranges, in the order of ``families``)

A model is (training mix, size, budget, seed): it is trained with :func:`lmlab.train.train` on batches
mixing the families of its mix in equal shares, then asked every question of the bank; a question is
answered correctly when the greedy (argmax over the whole vocabulary) next token at the answer position
is the answer. A model trained on task A mostly fails task B: that specialisation is what the model
embeddings should recover.

Caching and resume: each model's row of the matrix (its 0/1 answers, size, training time) is an entry of
the one artifact cache (:class:`lmlab.io.ArtifactCache`, ``cache_dir/zoo.sqlite``), committed when the model
finishes; its training run (checkpoints, metrics) is in ``cache_dir/zoo-runs/<key>/<name>/``. The key
covers the config, every family's version and the code of the modules the zoo depends on (this package,
the families, their tasks, the model and the training loop): editing one of them retrains, with one logged
line naming it. A rerun skips finished models, resumes a half-trained one from its checkpoint, and rebuilds
the matrix from the rows when every row is there.

Adding a family (e.g. a maze task): one class in :mod:`lmlab.zoo.families` and one registry line;
then list its name in ``ZooConfig.families`` and (optionally) in ``mixes``.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lmlab.config import Config, ConfigError
from lmlab.io import ArtifactCache, atomic_write_text, cache_root
from lmlab.routing.data import CorrectnessMatrix
from lmlab.zoo.families import FAMILIES
from lmlab.zoo.families.base import QuestionSet, ZooFamily
from lmlab.train import TrainConfig

ZOO_VERSION = "zoo/1"
PAD = 0


@dataclass(frozen=True)
class ZooConfig(Config):
    """The zoo: every combination of ``mixes`` x ``sizes`` x ``budgets`` is one model.

    A mix is a family name, several joined by ``+``, or ``all``. A size is ``LAYERSxD_MODEL`` (e.g. ``2x32``).
    Every model trains with ``train`` (optimizer, lr, schedule, device), its ``steps`` replaced by the model's
    budget, its warm-up capped at the budget, and its seed by ``seed + i``.
    """

    families: tuple[str, ...] = ("two-hop", "reversal", "markov", "bigram-backcopy")
    questions_per_family: int = 400
    mixes: tuple[str, ...] = ("two-hop", "reversal", "markov", "bigram-backcopy", "all")
    sizes: tuple[str, ...] = ("1x16", "1x32", "2x32", "2x48")
    budgets: tuple[int, ...] = (150, 450)
    batch_size: int = 32
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        lr=3e-3, warmup_steps=20, schedule="cosine", min_lr_ratio=0.1, checkpoint_every=100, progress=False))
    data_seed: int = 0  # the tasks' data (facts, chains, question bank): the same for every model
    seed: int = 0  # model i is initialised and fed with seed + i
    eval_batch: int = 256

    def validate(self) -> None:
        if not self.families:
            raise ConfigError("ZooConfig.families must list at least one family")
        for f in self.families:
            if f not in FAMILIES.entries:
                raise ConfigError(f"ZooConfig.families: unknown family '{f}'; known: {', '.join(FAMILIES.names())}")
        for mix in self.mixes:
            for f in mix_families(mix, self.families):
                if f not in self.families:
                    raise ConfigError(f"ZooConfig.mixes: '{mix}' uses '{f}', which is not in families "
                                      f"({', '.join(self.families)}); add it there or fix the mix")
        for s in self.sizes:
            parse_size(s)
        if not self.mixes or not self.sizes or not self.budgets:
            raise ConfigError("ZooConfig: mixes, sizes and budgets must each list at least one entry")
        if any(b < 1 for b in self.budgets) or self.batch_size < 1 or self.questions_per_family < 2:
            raise ConfigError("ZooConfig: budgets and batch_size must be >= 1, questions_per_family >= 2")

    @property
    def n_models(self) -> int:
        return len(self.mixes) * len(self.sizes) * len(self.budgets)


def mix_families(mix: str, families: tuple[str, ...]) -> list[str]:
    return list(families) if mix == "all" else [m for m in mix.split("+") if m]


def parse_size(size: str) -> tuple[int, int]:
    try:
        layers, d = (int(v) for v in size.lower().split("x"))
    except ValueError:
        raise ConfigError(f"ZooConfig.sizes: '{size}' must look like LAYERSxD_MODEL, e.g. 2x32") from None
    if layers < 1 or d < 4 or d % 4:
        raise ConfigError(f"ZooConfig.sizes: '{size}': layers >= 1 and d_model a multiple of 4 (>= 4)")
    return layers, d


@dataclass(frozen=True)
class ModelSpec:
    index: int
    mix: str
    layers: int
    d_model: int
    steps: int
    seed: int

    @property
    def name(self) -> str:
        return f"m{self.index:03d}-{self.mix}-{self.layers}x{self.d_model}-{self.steps}"


def model_specs(cfg: ZooConfig) -> list[ModelSpec]:
    out = []
    for i, (mix, size, steps) in enumerate(itertools.product(cfg.mixes, cfg.sizes, cfg.budgets)):
        layers, d = parse_size(size)
        out.append(ModelSpec(i, mix, layers, d, steps, cfg.seed + i))
    return out


def config_hash(cfg: ZooConfig) -> str:
    versions = {f: FAMILIES.get(f).version for f in cfg.families}
    d = cfg.to_dict()
    d["train"].pop("progress")  # shows a bar or not: the same models
    blob = json.dumps({"zoo": ZOO_VERSION, "cfg": d, "families": versions}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def default_cache_dir() -> Path:
    return cache_root()


#: the modules whose code decides the zoo's rows (besides each family's own module and its ``code``)
ZOO_CODE = ("lmlab.zoo", "lmlab.zoo.families.base", "lmlab.nn.model", "lmlab.nn.hooks", "lmlab.train.loop")


def zoo_code(cfg: ZooConfig) -> tuple[str, ...]:
    mods = list(ZOO_CODE)
    for f in cfg.families:
        fam = FAMILIES.get(f)
        mods += [fam.__module__, *fam.code]
    return tuple(mods)


def zoo_cache(cfg: ZooConfig, cache_dir: str | Path | None = None) -> ArtifactCache:
    """The artifact cache of the zoo's rows for ``cfg`` (key: config, family versions, code)."""
    versions = {f: FAMILIES.get(f).version for f in cfg.families}
    return ArtifactCache("zoo", config={"zoo": ZOO_VERSION, "cfg": cfg.to_dict(), "families": versions},
                         code=zoo_code(cfg), root=cache_dir, label="zoo")


# ----------------------------------------------------------------------------------------------
# The shared vocabulary
# ----------------------------------------------------------------------------------------------
class ZooVocab:
    """Families, their id offsets and prefix tokens; builds global training batches and the question bank."""

    def __init__(self, cfg: ZooConfig):
        self.cfg = cfg
        self.families: dict[str, ZooFamily] = {
            f: FAMILIES.get(f)(cfg.questions_per_family, seed=cfg.data_seed) for f in cfg.families}
        self.prefix = {f: 1 + i for i, f in enumerate(cfg.families)}
        self.offset: dict[str, int] = {}
        nxt = 1 + len(cfg.families)
        for f, fam in self.families.items():
            self.offset[f] = nxt
            nxt += fam.n_tokens
        self.d_vocab = nxt
        self.n_ctx = 1 + max(fam.max_len for fam in self.families.values())

    def batch(self, mix: str, step: int, batch_size: int, seed: int):
        """The lab's Batch for one training step: a pure function of (seed, step)."""
        from lmlab.train.loop import Batch

        fams = mix_families(mix, self.cfg.families)
        rng = np.random.default_rng(np.random.SeedSequence([seed, step]))
        counts = np.bincount(rng.integers(0, len(fams), size=batch_size), minlength=len(fams))
        x = np.full((batch_size, self.n_ctx), PAD, dtype=np.int64)
        y = np.full_like(x, PAD)
        mask = np.zeros_like(x, dtype=bool)
        row, width = 0, 1
        for f, n in zip(fams, counts):
            if n == 0:
                continue
            b = self.families[f].train_batch(int(n), rng)
            L = b.x.shape[1]
            off = self.offset[f]
            x[row:row + n, 0] = self.prefix[f]
            x[row:row + n, 1:L + 1] = b.x + off
            y[row:row + n, 0] = b.x[:, 0] + off  # never counted: the mask is False at the prefix
            y[row:row + n, 1:L + 1] = b.y + off
            mask[row:row + n, 1:L + 1] = b.mask
            row += n
            width = max(width, L + 1)
        # Trailing PAD columns carry no loss and (causal attention) change no other position: drop them, so a
        # batch of 3-token reversal facts costs a 3-token forward pass, not n_ctx.
        x, y, mask = x[:, :width], y[:, :width], mask[:, :width]
        return Batch(torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(mask))

    def question_bank(self) -> dict[str, Any]:
        """Global tokens (Q, n_ctx), answer positions, answers, texts, family and kind of every question."""
        toks, pos, ans, text, bench, kind = [], [], [], [], [], []
        for f, fam in self.families.items():
            qs: QuestionSet = fam.questions()
            off = self.offset[f]
            t = np.full((len(qs.answer), self.n_ctx), PAD, dtype=np.int64)
            t[:, 0] = self.prefix[f]
            L = qs.tokens.shape[1]
            t[:, 1:L + 1] = np.where(qs.tokens >= 0, qs.tokens + off, PAD)
            toks.append(t)
            pos.append(qs.answer_pos + 1)
            ans.append(qs.answer + off)
            text += [f"[{f}] {s}" for s in qs.text]
            bench += [f] * len(qs.answer)
            kind += qs.kind
        return {"tokens": np.concatenate(toks), "answer_pos": np.concatenate(pos).astype(np.int64),
                "answer": np.concatenate(ans).astype(np.int64), "text": text, "benchmarks": bench, "kind": kind}


def bag_of_tokens(tokens: np.ndarray, d_vocab: int) -> np.ndarray:
    """(Q, d_vocab) unit-norm counts of each question's non-PAD tokens: the zoo's question features.

    EmbedLLM's projection W_q of this vector is the mean of learned per-token vectors (columns of W_q):
    a learned question table over the zoo's vocabulary, which also covers questions never seen in training.
    """
    out = np.zeros((len(tokens), d_vocab), dtype=np.float32)
    rows = np.repeat(np.arange(len(tokens)), tokens.shape[1])
    flat = tokens.reshape(-1)
    keep = flat != PAD
    np.add.at(out, (rows[keep], flat[keep]), 1.0)
    return out / np.linalg.norm(out, axis=1, keepdims=True).clip(1e-9)


def zoo_features(m: CorrectnessMatrix) -> np.ndarray:
    """The bag-of-tokens features of a zoo matrix's questions (from the tokens stored in its meta)."""
    return bag_of_tokens(np.asarray(m.meta["tokens"], dtype=np.int64), int(m.meta["build"]["d_vocab"]))


@torch.no_grad()
def answer_correct(model: torch.nn.Module, bank: dict[str, Any], batch: int = 256) -> np.ndarray:
    """0/1 per question: the greedy next token at the answer position equals the answer."""
    model.eval()
    out = []
    toks = torch.from_numpy(bank["tokens"])
    pos = torch.from_numpy(bank["answer_pos"])
    ans = torch.from_numpy(bank["answer"])
    for s in range(0, len(toks), batch):
        p = pos[s:s + batch]
        logits = model(toks[s:s + batch, : int(p.max()) + 1])  # causal: later positions change nothing
        pred = logits[torch.arange(len(logits)), p].argmax(-1)
        out.append((pred == ans[s:s + batch]).numpy())
    return np.concatenate(out).astype(np.int8)


# ----------------------------------------------------------------------------------------------
# Building
# ----------------------------------------------------------------------------------------------
def build_zoo(cfg: ZooConfig, cache_dir: str | Path | None = None, progress: bool = True,
              max_models: int | None = None) -> tuple[CorrectnessMatrix, dict[str, Any]]:
    """Train (or reuse) every zoo model and return the correctness matrix and build info.

    ``max_models`` stops after that many *new* models (for tests of resume); the matrix is then not built
    and a :class:`RuntimeError` says so.
    """
    from tqdm.auto import tqdm

    from lmlab.nn import TinyConfig, TinyTransformer
    from lmlab.train import train

    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    key = config_hash(cfg)
    cache = zoo_cache(cfg, root)
    zdir = root / "zoo-runs" / cache.digest
    info: dict[str, Any] = {"hash": key, "cache_key": cache.digest, "cache_dir": str(root), "reused_matrix": False,
                            "trained_now": 0}
    specs = model_specs(cfg)
    vocab = ZooVocab(cfg)
    bank = vocab.question_bank()
    rows: dict[str, dict[str, Any]] = {}
    for spec in specs:
        row = cache.get(spec.name)
        if row is not None:
            rows[spec.name] = row
    build_info = cache.get("build")
    if len(rows) == len(specs) and build_info is not None:
        info["reused_matrix"] = True
        info.update(build_info)
        info["trained_now"] = 0  # build_info counts the models trained by the call that built the matrix
        info["stage"] = cache.stage(computed=0, cached=len(specs))
        return _matrix(cfg, key, specs, rows, bank, build_info), info

    if cache.reason:
        import logging

        logging.getLogger("lmlab.cache").warning("cache zoo: training anew: %s", cache.reason)
    zdir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(zdir / "config.json", json.dumps({"hash": key, "cache_key": cache.digest, "zoo": cfg.to_dict(),
                                                        "code": cache.parts["code"]}, indent=2))
    started = time.perf_counter()
    new = 0
    bar = tqdm(specs, desc="zoo", disable=not progress, dynamic_ncols=True)
    for spec in bar:
        if spec.name in rows:
            continue
        if max_models is not None and new >= max_models:
            bar.close()
            raise RuntimeError(f"zoo build stopped after {new} new models (max_models); run again to resume")
        bar.set_postfix_str(spec.name, refresh=False)
        torch.manual_seed(spec.seed)
        mcfg = TinyConfig(d_vocab=vocab.d_vocab, n_ctx=vocab.n_ctx, n_layers=spec.layers, d_model=spec.d_model,
                          n_heads=max(1, spec.d_model // 16))
        model = TinyTransformer(mcfg)
        tcfg = cfg.train.replace(steps=spec.steps, warmup_steps=min(cfg.train.warmup_steps, spec.steps),
                                 eval_every=spec.steps, log_every=max(1, spec.steps // 10), seed=spec.seed,
                                 progress=False)  # one bar over the models instead
        t0 = time.perf_counter()
        result = train(model, tcfg, lambda step, s=spec: vocab.batch(s.mix, step, cfg.batch_size, s.seed),
                       zdir / spec.name, resume=True,
                       meta={"zoo_hash": key, "model": mcfg.to_dict(), "spec": spec.__dict__})
        correct = answer_correct(model, bank, cfg.eval_batch)
        row = {"spec": spec.__dict__, "name": spec.name, "correct": correct.tolist(),
               "train_seconds": round(time.perf_counter() - t0, 2), "n_params": model.n_params,
               "final_step": result.final_step}
        cache.put(spec.name, row)  # a finished model's row is committed before the next one starts
        rows[spec.name] = row
        new += 1
    bar.close()

    build = {"seconds_this_call": round(time.perf_counter() - started, 1), "trained_now": new,
             "train_seconds_total": round(sum(rows[s.name]["train_seconds"] for s in specs), 1),
             "d_vocab": vocab.d_vocab, "n_ctx": vocab.n_ctx}
    cache.put("build", build)
    info.update(build)
    info["stage"] = cache.stage(computed=new, cached=len(specs) - new)
    return _matrix(cfg, key, specs, rows, bank, build), info


def _matrix(cfg: ZooConfig, key: str, specs: list[ModelSpec], rows: dict[str, dict[str, Any]], bank: dict[str, Any],
            build: dict[str, Any]) -> CorrectnessMatrix:
    names = [s.name for s in specs]
    labels = np.stack([np.asarray(rows[n]["correct"], dtype=np.int8) for n in names])
    attrs = {"mix": [s.mix for s in specs], "layers": [s.layers for s in specs], "d_model": [s.d_model for s in specs],
             "steps": [s.steps for s in specs], "seed": [s.seed for s in specs],
             "n_params": [rows[n]["n_params"] for n in names], "train_seconds": [rows[n]["train_seconds"] for n in names]}
    meta = {"zoo_hash": key, "zoo": cfg.to_dict(), "kind": bank["kind"], "answer_pos": bank["answer_pos"].tolist(),
            "answer": bank["answer"].tolist(), "tokens": bank["tokens"].tolist(), "build": build}
    return CorrectnessMatrix(labels, names, [str(i) for i in range(labels.shape[1])], bank["text"], bank["benchmarks"],
                             attrs, meta)
