"""Tokenization theory: transformers on k-th order Markov sources, with and without tokenizers.

Rajaraman, Jiao, Ramchandran, *Toward a Theory of Tokenization in LLMs* (arXiv 2404.08335; NeurIPS
2025 as *An Analysis of Tokenization: Transformers under Markov Data*).

What this study does, in order:

1. **Count-based check (no transformer).** For every source in ``sources`` and every dictionary
   size in ``dict_sizes``: learn a BPE dictionary (Hugging Face ``tokenizers``) on
   ``bpe_train_chars`` characters and an LZ78 dictionary on ``lz_train_chars`` characters, fit the
   token unigram by counting on ``unigram_train_chars`` characters, and evaluate it on
   ``test_chars`` fresh characters, in nats per character (the spec's protocol; the O(log m)
   length term of the unigram is left out). The character unigram and the exact entropy rate
   ``H_inf`` of the source are the two reference lines.
2. **Transformers.** For every source in ``transformer_sources``: one model on characters and one
   on BPE tokens for every size in ``transformer_dict_sizes`` (the tokenizers of step 1), all with
   the same architecture, the same training schedule and the same character stream: every
   training row is ``seq_chars`` characters, tokenized whole, with BOS in front, so a token model
   and the character model see exactly the same characters per step. The loss per character is
   the total token negative log-likelihood of a row divided by its ``seq_chars`` characters
   (``lmlab.analysis.tokenization.per_char_loss``), measured on a fixed evaluation set. The model
   is the default of the base code the paper builds on (Makkuva et al.: 1 layer, 1 head, width 8,
   AdamW 2e-3, betas 0.9/0.95, weight decay 1e-3, cosine). A larger model, the ``probe`` variant
   (dotted overrides of ``model``: 2 layers, width 64), is trained on characters and on the largest BPE
   dictionary with the same schedule and step budget, so that tokens and characters are compared at
   matched capacity and budget at two model sizes.
3. Figures (cross-entropy against dictionary size with the entropy-rate and unigram lines; the
   per-character loss of every transformer over training) and ``summary.json``, whose claims
   carry the measured gaps to ``H_inf`` in nats per character.

The default config is our long setting (the paper's model sizes and step counts are not known to
us): three sources, sequences of 512 characters, 4,000 steps, dictionaries 8-512. ``--quick`` trains
on two sources (k = 2 and k = 4), sequences of 256 characters, 500 steps per model (the probe too),
dictionaries 32/128/512 (run times in docs/studies/tokenization.md; use ``--threads 1`` when
other jobs share the cores).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from lmlab.analysis.tokenization import per_char_loss, token_unigram_eval
from lmlab.config import Config, ConfigError, Variant
from lmlab.nn import TinyConfig, TinyTransformer
from lmlab.studies.base import Claim, Result, Rule, Study, is_true, not_comparable, pyplot, save_figure
from lmlab.tasks.markov import EVAL_STREAM, MarkovConfig, MarkovSource
from lmlab.tokenizers.base import Tokenizer
from lmlab.tokenizers.bpe import BPETokenizer
from lmlab.tokenizers.char import CharTokenizer
from lmlab.tokenizers.lz78 import LZ78Tokenizer
from lmlab.train import Batch, TrainConfig, train

# The spec's sources and its count-based table (a "small CPU run", not the paper's numbers): nats/char.
SPEC_SOURCES = (
    MarkovConfig(kind="switching", order=1, delta=0.2),
    MarkovConfig(kind="switching", order=2, delta=0.2),
    MarkovConfig(kind="switching", order=4, delta=0.1),
)
SPEC_DICT_SIZES = (8, 32, 128, 512)
# The spec's count-based protocol: characters to train BPE, LZ78 and the unigram on, and to test on.
SPEC_PROTOCOL = {"bpe_train_chars": 50_000, "lz_train_chars": 200_000, "unigram_train_chars": 200_000,
                 "test_chars": 100_000}
SPEC_BPE_GAPS = {"k=1": 0.033, "k=2": 0.031, "k=4": 0.068}  # BPE token unigram - H_inf at d = 512
SPEC_TABLE = {  # (order, delta) -> tokenizer -> values at SPEC_DICT_SIZES
    (1, 0.2): {"bpe": (0.679, 0.609, 0.550, 0.533), "lz78": (0.788, 0.588, 0.550, 0.536)},
    (2, 0.2): {"bpe": (0.748, 0.602, 0.548, 0.531), "lz78": (0.743, 0.634, 0.583, 0.557)},
    (4, 0.1): {"bpe": (0.748, 0.455, 0.403, 0.393), "lz78": (0.686, 0.661, 0.538, 0.458)},
}
# Text streams of MarkovSource.text: tokenizer/unigram training text and the count-based test text.
TRAIN_TEXT, TEST_TEXT, EVAL_ROWS = 0, 1, 2

# Tolerances of the claims (nats per character), written once here and quoted in each claim.
GAP_BPE_UNIGRAM = 0.07  # the spec's pass criterion for the BPE token unigram at d = 512
GAP_TRANSFORMER = 0.07  # same bar for the transformer on the largest BPE dictionary
PLATEAU_TOL = 0.05  # "near the unigram": |char-model loss - H(pi_1)| <= this
MONOTONE_TOL = 0.01  # "the gap shrinks": each larger dictionary may be at most this much worse
MIN_DICT = 32  # smaller dictionaries can be worse than characters (the spec): monotone and table claims start here
UNIGRAM_SLACK = 0.02  # the transformer on tokens does at least as well as the count-based token unigram
#: why the count-based claims pass with learning switched off: no neural model is involved in them
COUNT_BASED_REASON = "count-based: BPE/LZ78 dictionaries and a counted unigram, no transformer is trained"


@dataclass(frozen=True)
class TokenizationConfig(Config):
    """Our long setting; ``seed`` seeds the data streams, the tokenizer training text and the initialisations."""

    seed: int = 0
    sources: tuple[MarkovConfig, ...] = SPEC_SOURCES
    # count-based check (the spec's protocol)
    dict_sizes: tuple[int, ...] = SPEC_DICT_SIZES
    bpe_train_chars: int = SPEC_PROTOCOL["bpe_train_chars"]
    lz_train_chars: int = SPEC_PROTOCOL["lz_train_chars"]
    unigram_train_chars: int = SPEC_PROTOCOL["unigram_train_chars"]
    test_chars: int = SPEC_PROTOCOL["test_chars"]
    # transformers: indices into `sources`, and the BPE sizes to train on (characters are always trained)
    transformer_sources: tuple[int, ...] = (0, 1, 2)
    transformer_dict_sizes: tuple[int, ...] = SPEC_DICT_SIZES
    transformer_tokenizer: Literal["bpe", "lz78"] = "bpe"
    # The base code's model (Makkuva et al., which the paper builds on): 1 layer, 1 head, width 8, GPT-2 init.
    model: TinyConfig = field(default_factory=lambda: TinyConfig(n_layers=1, d_model=8, n_heads=1, init="gpt2"))
    # A larger model (null: skip), trained on characters and on the largest BPE dictionary with the same schedule:
    # tokens vs characters at a second capacity. Overrides of `model` (and `train`), applied to this config.
    probe: Variant | None = Variant("probe", ("model.n_layers=2", "model.d_model=64"))
    # Makkuva et al.'s optimiser: AdamW 2e-3, betas (0.9, 0.95), weight decay 1e-3, cosine.
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        steps=4000, lr=2e-3, betas=(0.9, 0.95), weight_decay=1e-3, warmup_steps=100, schedule="cosine",
        min_lr_ratio=0.1, eval_every=100, log_every=10, checkpoint_every=250))
    seq_chars: int = 512
    batch_size: int = 32
    eval_size: int = 128

    def validate(self) -> None:
        if not self.sources:
            raise ConfigError("TokenizationConfig.sources must list at least one source")
        if not self.dict_sizes or any(d < 2 for d in self.dict_sizes) or list(self.dict_sizes) != sorted(set(self.dict_sizes)):
            raise ConfigError(f"TokenizationConfig.dict_sizes must be increasing sizes >= 2, got {self.dict_sizes}")
        bad = [i for i in self.transformer_sources if not 0 <= i < len(self.sources)]
        if bad:
            raise ConfigError(f"TokenizationConfig.transformer_sources: {bad} are not indices into sources "
                              f"(0..{len(self.sources) - 1})")
        missing = [d for d in self.transformer_dict_sizes if d not in self.dict_sizes]
        if missing:
            raise ConfigError(f"TokenizationConfig.transformer_dict_sizes {missing} must also be in dict_sizes")
        if list(self.transformer_dict_sizes) != sorted(set(self.transformer_dict_sizes)):
            raise ConfigError("TokenizationConfig.transformer_dict_sizes must be increasing")
        for name in ("bpe_train_chars", "lz_train_chars", "unigram_train_chars", "test_chars", "seq_chars",
                     "batch_size", "eval_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"TokenizationConfig.{name} must be >= 1, got {getattr(self, name)}")
        for s in self.sources:
            if s.order >= self.seq_chars:
                raise ConfigError(f"TokenizationConfig.seq_chars ({self.seq_chars}) must exceed every source's order")


# ----------------------------------------------------------------------------------------------
# Tokenized batches: every row is `seq_chars` characters, tokenized whole, BOS in front
# ----------------------------------------------------------------------------------------------
def token_batch(tok: Tokenizer, texts: list[str]) -> tuple[Batch, torch.Tensor]:
    """Encode each row whole; x = [BOS, t_1 .. t_{j-1}], y = [t_1 .. t_j], padded with BOS and masked.

    Every token of a row is a target, so the masked token NLL of a row is ``-log Q(enc(row))`` and its
    tokens decode to the whole row. Returns the batch and the characters per row (``len(row)``).
    """
    bos = tok.vocab_size
    ids = tok.encode_batch(texts)
    n_chars = torch.tensor([len(t) for t in texts])
    for row, text in zip(ids, texts):  # the tokens cover exactly the characters we divide by
        if tok.n_chars(row) != len(text):
            raise AssertionError(f"{tok!r}: {len(row)} tokens decode to {tok.n_chars(row)} characters, not {len(text)}")
    L = max(len(r) for r in ids)
    seq = torch.full((len(ids), L + 1), bos, dtype=torch.long)
    mask = torch.zeros((len(ids), L), dtype=torch.bool)
    for i, r in enumerate(ids):
        seq[i, 1: len(r) + 1] = torch.tensor(r, dtype=torch.long)
        mask[i, : len(r)] = True
    return Batch(seq[:, :-1], seq[:, 1:], mask), n_chars


def eval_per_char(model: TinyTransformer, batch: Batch, n_chars: torch.Tensor) -> dict[str, float]:
    device = next(model.parameters()).device
    logits = model(batch.tokens.to(device)).float().cpu()
    nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch.targets.reshape(-1), reduction="none")
    nll = nll.reshape(batch.targets.shape)
    n_tok = int(batch.mask.sum())
    return {"loss_per_char": per_char_loss(nll, batch.mask, n_chars),
            "loss_per_token": float(nll[batch.mask].sum()) / n_tok,
            "chars_per_token": float(n_chars.sum()) / n_tok}


def _slug(s: MarkovConfig) -> str:
    return f"{s.kind}-k{s.order}-d{s.delta:g}" if s.kind == "switching" else f"{s.kind}-k{s.order}-m{s.alphabet_size}-c{s.chain_seed}"


# ----------------------------------------------------------------------------------------------
# The study
# ----------------------------------------------------------------------------------------------
class TokenizationStudy(Study):
    name = "tokenization"
    title = "Tokenization theory: transformers on k-th order Markov sources, with and without tokenizers"
    paper = "Rajaraman, Jiao, Ramchandran, Toward a Theory of Tokenization in LLMs, arXiv 2404.08335"
    config_cls = TokenizationConfig

    def quick_config(self) -> TokenizationConfig:
        """Transformers on k=2 and k=4 only, sequences of 256 characters, 500 steps (the probe too), BPE 32/128/512."""
        base = TokenizationConfig()
        return base.replace(
            transformer_sources=(1, 2),
            transformer_dict_sizes=(32, 128, 512),
            seq_chars=256,
            train=base.train.replace(steps=500, warmup_steps=50, eval_every=50, checkpoint_every=100),
        )

    #: a seconds-scale run for the control test: small count-based texts, one source, 10 steps per model
    tiny = ("dict_sizes=[8,32]", "transformer_dict_sizes=[32]", "transformer_sources=[1]", "bpe_train_chars=5000",
            "lz_train_chars=5000", "unigram_train_chars=5000", "test_chars=5000", "seq_chars=32", "batch_size=4",
            "eval_size=8", "train.steps=10", "train.warmup_steps=2", "train.eval_every=5", "train.checkpoint_every=10")

    def control_config(self, cfg: TokenizationConfig) -> TokenizationConfig:
        """Learning switched off: every transformer (the probe too) gets learning rate 1e-9; the count-based
        claims involve no training and are marked ``holds_without_training``."""
        probe = cfg.probe
        if probe is not None:
            probe = Variant(probe.name, tuple(probe.overrides) + ("train.lr=1e-09",))
        return cfg.replace(train=cfg.train.replace(lr=1e-9), probe=probe)

    def execute(self, cfg: TokenizationConfig, out: Path, quick: bool, resume: bool) -> Result:
        probe = cfg.probe.apply(cfg) if cfg.probe is not None else None  # checked before anything trains
        sources = [MarkovSource(s, seed=cfg.seed) for s in cfg.sources]
        count_based, tokenizers = [], {}
        for i, src in enumerate(sources):
            row, toks = self._count_based(cfg, src)
            count_based.append(row)
            tokenizers[i] = toks

        runs: dict[str, dict[str, Any]] = {}
        stages: dict[str, Any] = {}
        for i in cfg.transformer_sources:
            src = sources[i]
            char_tok = CharTokenizer(src.alphabet)
            specs = [("char", src.m, char_tok)] + [
                (cfg.transformer_tokenizer, d, tokenizers[i][cfg.transformer_tokenizer][d]) for d in cfg.transformer_dict_sizes]
            for kind, d, tok in specs:
                name = f"{_slug(src.cfg)}-{kind}{'' if kind == 'char' else d}"
                runs[name] = {"source": i, "tokenizer": kind, "dict_size": d, "model": "paper",
                              **self._train_one(cfg, src, tok, out / name, resume)}
            if probe is not None:  # the same comparison at a second capacity: characters vs the largest dictionary
                for kind, d, tok in (specs[0], specs[-1]):
                    name = f"{_slug(src.cfg)}-{kind}{'' if kind == 'char' else d}-probe"
                    runs[name] = {"source": i, "tokenizer": kind, "dict_size": d, "model": "probe",
                                  **self._train_one(probe, src, tok, out / name, resume)}
        for name, r in runs.items():
            stages[name] = r.pop("stage")

        figures = self._figures(cfg, probe, out, sources, count_based, runs)
        claims = self._claims(cfg, sources, count_based, runs)
        metrics = {
            "sources": [{"config": s.cfg.to_dict(), "label": s.cfg.label, "entropy_rate": s.entropy_rate,
                         "unigram_entropy": s.unigram_entropy,
                         "optimal_per_char_at_seq_chars": s.block_entropy(cfg.seq_chars) / cfg.seq_chars}
                        for s in sources],
            "count_based": count_based,
            "transformers": {n: {k: v for k, v in r.items() if k != "evals"} for n, r in runs.items()},
            "spec_count_table": self._spec_table(cfg, sources, count_based),
        }
        return Result(claims, metrics, figures, sources[0].version, stages=stages)

    # -- step 1: count-based token unigrams -----------------------------------------------------
    @staticmethod
    def _count_based(cfg: TokenizationConfig, src: MarkovSource) -> tuple[dict[str, Any], dict[str, dict[int, Tokenizer]]]:
        n_train = max(cfg.bpe_train_chars, cfg.lz_train_chars, cfg.unigram_train_chars)
        train_text = src.text(n_train, TRAIN_TEXT)
        test_text = src.text(cfg.test_chars, TEST_TEXT)
        uni_text = train_text[: cfg.unigram_train_chars]
        char = token_unigram_eval(CharTokenizer(src.alphabet), uni_text, test_text)
        row: dict[str, Any] = {"source": src.cfg.label, "entropy_rate": src.entropy_rate,
                               "unigram_entropy": src.unigram_entropy, "char_unigram": char["nats_per_char"],
                               "dict_sizes": list(cfg.dict_sizes)}
        toks: dict[str, dict[int, Tokenizer]] = {"bpe": {}, "lz78": {}}
        for kind, cls, n in (("bpe", BPETokenizer, cfg.bpe_train_chars), ("lz78", LZ78Tokenizer, cfg.lz_train_chars)):
            evals = []
            for d in cfg.dict_sizes:
                tok = cls.train(train_text[:n], d, src.alphabet)
                toks[kind][d] = tok
                evals.append(token_unigram_eval(tok, uni_text, test_text))
            row[kind] = [e["nats_per_char"] for e in evals]
            row[f"{kind}_gap"] = [e["nats_per_char"] - src.entropy_rate for e in evals]
            row[f"{kind}_chars_per_token"] = [e["chars_per_token"] for e in evals]
            row[f"{kind}_vocab"] = [e["vocab_size"] for e in evals]
        return row, toks

    # -- step 2: one transformer ------------------------------------------------------------------
    @staticmethod
    def _train_one(cfg: TokenizationConfig, src: MarkovSource, tok: Tokenizer, run_dir: Path,
                   resume: bool) -> dict[str, Any]:
        """Train one model (``cfg.model`` with the tokenizer's vocabulary + BOS, ``cfg.train``) in ``run_dir``;
        resumable. ``cfg`` is the study config, or the probe variant of it."""
        model_cfg = cfg.model.replace(d_vocab=tok.vocab_size + 1, n_ctx=cfg.seq_chars)  # + BOS; n tokens <= n chars
        torch.manual_seed(cfg.seed)
        model = TinyTransformer(model_cfg)
        ev_batch, ev_chars = token_batch(tok, src.sample_text(cfg.eval_size, cfg.seq_chars, src.rng(EVAL_STREAM + EVAL_ROWS)))

        def batch_fn(step: int) -> Batch:
            # The same characters for every model of this source: a pure function of (seed, step).
            return token_batch(tok, src.sample_text(cfg.batch_size, cfg.seq_chars, src.rng(step)))[0]

        result = train(
            model, cfg.train.seeded(cfg.seed), batch_fn, run_dir,
            eval_fn=lambda m, step: eval_per_char(m, ev_batch, ev_chars), resume=resume,
            meta={"source": src.cfg.to_dict(), "task_version": src.version, "model": model_cfg.to_dict(),
                  "tokenizer": {"name": tok.name, "vocab_size": tok.vocab_size, "fingerprint": tok.fingerprint()},
                  "seq_chars": cfg.seq_chars, "batch_size": cfg.batch_size, "eval_size": cfg.eval_size,
                  "seed": cfg.seed},
            code=("lmlab.tasks.markov", "lmlab.analysis.tokenization", f"{type(tok).__module__}",
                  "lmlab.studies.tokenization:token_batch", "lmlab.studies.tokenization:eval_per_char"),
        )
        evals = result.evals
        last = evals[-max(1, len(evals) // 5):]  # the final fifth of the evaluations
        final = evals[-1]
        return {
            "final_loss_per_char": final["loss_per_char"],
            "tail_mean_loss_per_char": float(np.mean([e["loss_per_char"] for e in last])),
            "min_loss_per_char": float(min(e["loss_per_char"] for e in evals)),
            "final_loss_per_token": final["loss_per_token"],
            "chars_per_token": final["chars_per_token"],
            "gap_to_entropy_rate": final["loss_per_char"] - src.entropy_rate,
            "gap_to_unigram": final["loss_per_char"] - src.unigram_entropy,
            "vocab_size": tok.vocab_size,
            "n_params": model.n_params,
            "n_layers": model_cfg.n_layers, "d_model": model_cfg.d_model, "steps": cfg.train.steps,
            "train_seconds": round(result.seconds, 1),
            "evals": [{k: e[k] for k in ("step", "loss_per_char", "loss_per_token")} for e in evals],
            "stage": result.stage,
        }

    # -- claims -------------------------------------------------------------------------------------
    @staticmethod
    def _claims(cfg: TokenizationConfig, sources: list[MarkovSource], cb: list[dict[str, Any]],
                runs: dict[str, dict[str, Any]]) -> list[Claim]:
        claims = []
        r4 = lambda x: None if x is None else round(float(x), 4)  # noqa: E731

        def by_source(i: int, kind: str) -> list[dict[str, Any]]:
            return sorted((r for r in runs.values() if r["source"] == i and r["tokenizer"] == kind and r["model"] == "paper"),
                          key=lambda r: r["dict_size"])

        # (1) Without tokenization: the character model sits at the unigram loss (k >= 2).
        high = [i for i in cfg.transformer_sources if sources[i].k >= 2]
        chars = {sources[i].cfg.label: by_source(i, "char")[0] for i in high}
        measured = {lab: {"loss_per_char": r4(r["final_loss_per_char"]), "unigram": r4(sources[i].unigram_entropy),
                          "gap_to_unigram": r4(r["gap_to_unigram"]), "gap_to_entropy_rate": r4(r["gap_to_entropy_rate"])}
                    for i, (lab, r) in zip(high, chars.items())}
        for r in runs.values():  # the larger character model, reported beside (not judged by this rule)
            if r["model"] == "probe" and r["tokenizer"] == "char" and sources[r["source"]].k >= 2:
                measured[sources[r["source"]].cfg.label]["probe_loss_per_char (not judged)"] = r4(r["final_loss_per_char"])
        claims.append(Claim.judged(
            "char_transformer_unigram_plateau",
            "Without tokenization, a transformer on a k >= 2 switching source predicts like a character unigram "
            "(per-character loss stays near H(pi) = ln 2, far above the entropy rate), at the base code's model size "
            "(the probe's loss is reported beside it: see tokens_beat_characters_matched)",
            paper_value="ln 2 = 0.6931 (qualitative, Makkuva et al.'s unigram plateau)", measured=measured,
            rule=_unless_empty(chars, all(abs(r["gap_to_unigram"]) <= PLATEAU_TOL for r in chars.values()),
                               f"for every trained source with k >= 2: |final loss per char - H(pi_1)| <= {PLATEAU_TOL}"),
            source="[abstract]",
            evidence={"steps": cfg.train.steps, "seq_chars": cfg.seq_chars, "model": cfg.model.to_dict(),
                      "note": "judged for the base code's model at this step budget only; a longer run may leave the plateau",
                      "larger_char_model": {sources[r["source"]].cfg.label: {
                          "loss_per_char": r4(r["final_loss_per_char"]), "gap_to_unigram": r4(r["gap_to_unigram"]),
                          "gap_to_entropy_rate": r4(r["gap_to_entropy_rate"])}
                          for r in runs.values() if r["model"] == "probe"}},
        ))

        # (2) With tokenization the transformer gets near the entropy rate.
        kind = cfg.transformer_tokenizer
        tops = {sources[i].cfg.label: by_source(i, kind)[-1] for i in cfg.transformer_sources if by_source(i, kind)}
        claims.append(Claim.judged(
            "token_transformer_near_entropy_rate",
            f"With tokenization ({kind}, largest dictionary) the transformer's per-character loss gets near the "
            "entropy rate H_inf",
            paper_value="near H_inf (qualitative)",
            measured={lab: {"dict_size": r["dict_size"], "loss_per_char": r4(r["final_loss_per_char"]),
                            "entropy_rate": r4(sources[r["source"]].entropy_rate),
                            "gap_nats_per_char": r4(r["gap_to_entropy_rate"])} for lab, r in tops.items()},
            rule=_unless_empty(tops, all(r["gap_to_entropy_rate"] <= GAP_TRANSFORMER for r in tops.values()),
                               f"for every trained source: final loss per char - H_inf <= {GAP_TRANSFORMER} nats/char"),
            source="[abstract]",
        ))

        # (3) The transformer's gap shrinks as the dictionary grows.
        gaps = {sources[i].cfg.label: [(r["dict_size"], r["gap_to_entropy_rate"]) for r in by_source(i, kind)]
                for i in cfg.transformer_sources}
        gaps = {k: v for k, v in gaps.items() if len(v) >= 2}
        # every token model judged here must have learnt at least the count-based unigram over its tokens
        learnt = {k: t <= u + UNIGRAM_SLACK for k, (t, u) in self_unigram_pairs(cfg, sources, cb, runs).items()}
        ok = all(_shrinks([g for _, g in v]) for v in gaps.values()) and all(learnt.values())
        claims.append(Claim.judged(
            "token_transformer_gap_shrinks_with_dictionary",
            "The transformer's gap to the entropy rate shrinks as the dictionary grows",
            paper_value="decreasing in d (qualitative)",
            measured={lab: {str(d): r4(g) for d, g in v} for lab, v in gaps.items()},
            rule=_unless_empty(gaps, ok, f"for every source: each larger dictionary's gap <= the previous one's + "
                                         f"{MONOTONE_TOL}, and the largest dictionary's gap < the smallest's; every "
                                         f"token model <= its count-based token unigram + {UNIGRAM_SLACK}"),
            source="[abstract]",
        ))

        # (4) The transformer learns at least the token unigram (the theory's model is a unigram over tokens).
        pairs = self_unigram_pairs(cfg, sources, cb, runs)
        claims.append(Claim.judged(
            "token_transformer_at_least_token_unigram",
            "A transformer on tokens does at least as well as the count-based unigram over the same tokens",
            paper_value="transformer <= token unigram (the theory's upper bound is a token unigram)",
            measured={k: {"transformer": r4(t), "count_unigram": r4(u), "difference": r4(t - u)} for k, (t, u) in pairs.items()},
            rule=_unless_empty(pairs, all(t <= u + UNIGRAM_SLACK for t, u in pairs.values()),
                               f"every (source, d): transformer loss per char <= count-based unigram + {UNIGRAM_SLACK}"),
            source="[abstract]",
        ))

        # (5) Count-based: BPE token unigram at the largest dictionary is near H_inf.
        dmax, spec_dmax = cfg.dict_sizes[-1], SPEC_DICT_SIZES[-1]
        bpe_gaps = {row["source"]: row["bpe_gap"][-1] for row in cb}
        bpe_words = f"every source: BPE unigram gap at d = {dmax} < {GAP_BPE_UNIGRAM}"
        claims.append(Claim.judged(
            "bpe_token_unigram_near_entropy_rate",
            f"Count-based: a unigram over BPE tokens (d = {dmax}) is within {GAP_BPE_UNIGRAM} nats/char of H_inf",
            paper_value={"spec_criterion": f"gap < {GAP_BPE_UNIGRAM} at d = {spec_dmax} for every source",
                         "spec_gaps": SPEC_BPE_GAPS},
            measured={k: r4(v) for k, v in bpe_gaps.items()},
            rule=is_true(all(g < GAP_BPE_UNIGRAM for g in bpe_gaps.values()), bpe_words) if dmax == spec_dmax
            else not_comparable(f"{bpe_words}, judged only when d = {spec_dmax}"),
            source="[secondary] spec small CPU run; theorem [recollection]",
            holds_without_training=True, holds_reason=COUNT_BASED_REASON,
        ))

        # (6) Count-based: the gap shrinks as the dictionary grows (BPE and LZ78), from d = MIN_DICT up.
        mono = {f"{row['source']} {kind}": [r4(g) for d, g in zip(row["dict_sizes"], row[f"{kind}_gap"]) if d >= MIN_DICT]
                for row in cb for kind in ("bpe", "lz78")}
        mono = {k: v for k, v in mono.items() if len(v) >= 2}
        claims.append(Claim.judged(
            "token_unigram_gap_shrinks_with_dictionary",
            "Count-based: the token unigram's gap to H_inf shrinks as the dictionary grows (BPE and LZ78; the spec "
            f"notes very small dictionaries can be worse than characters, so d >= {MIN_DICT})",
            paper_value="decreasing toward H_inf", measured=mono,
            rule=_unless_empty(mono, all(_shrinks(v) for v in mono.values()),
                               f"each larger dictionary's gap <= the previous one's + {MONOTONE_TOL}; largest < smallest"),
            source="[secondary] spec; theorem [recollection]",
            evidence={"char_unigram": {row["source"]: r4(row["char_unigram"]) for row in cb}},
            holds_without_training=True, holds_reason=COUNT_BASED_REASON,
        ))

        # (7) Tokens vs characters at matched capacity and budget: the base model and the probe, each trained on
        # characters and on the largest BPE dictionary with the same schedule and steps. The token models must
        # have learnt (<= their count-based unigram + slack): an untrained token model is "better" per character
        # only because each prediction covers several characters.
        tmax = cfg.transformer_dict_sizes[-1] if cfg.transformer_dict_sizes else None
        matched: dict[str, dict[str, Any]] = {}
        ok7 = True
        for size in ("paper", "probe"):
            for i in cfg.transformer_sources:
                sel = {r["tokenizer"]: r for r in runs.values() if r["source"] == i and r["model"] == size
                       and (r["tokenizer"] == "char" or r["dict_size"] == tmax)}
                if len(sel) < 2:
                    continue
                c, t = sel["char"], sel[kind]
                uni = cb[i][kind][cb[i]["dict_sizes"].index(tmax)]
                learnt_t = t["final_loss_per_char"] <= uni + UNIGRAM_SLACK
                ok7 = ok7 and learnt_t and t["final_loss_per_char"] < c["final_loss_per_char"]
                matched[f"{sources[i].cfg.label}, {size}"] = {
                    "model": f"{t['n_layers']} layer(s), d_model {t['d_model']}", "steps": t["steps"],
                    "char": r4(c["final_loss_per_char"]), f"{kind}{tmax}": r4(t["final_loss_per_char"]),
                    "difference": r4(t["final_loss_per_char"] - c["final_loss_per_char"]),
                    "token_model_learnt": learnt_t}
        claims.append(Claim.judged(
            "tokens_beat_characters_matched",
            f"At matched capacity and step budget, a transformer on {kind} tokens (d = {tmax}) has a lower "
            "per-character loss than the same transformer on characters, at the base code's size and at the probe's",
            paper_value="tokenization helps (qualitative, the paper's headline)", measured=matched,
            rule=_unless_empty(matched, ok7, f"for every (source, model size): loss per char on tokens < on characters, "
                                             f"and the token model <= its count-based token unigram + {UNIGRAM_SLACK}"),
            source="[abstract]",
            scale=f"{cfg.train.steps} steps, rows of {cfg.seq_chars} characters",
        ))

        return claims

    @staticmethod
    def _spec_table(cfg: TokenizationConfig, sources: list[MarkovSource], cb: list[dict[str, Any]]) -> dict[str, Any]:
        """The spec's count-based table beside ours (a record, not a claim: the spec's numbers are an earlier
        small CPU run, not the paper's)."""
        cells, diffs = {}, []
        for src, row in zip(sources, cb):
            key = (src.k, src.cfg.delta)
            if src.cfg.kind != "switching" or key not in SPEC_TABLE:
                continue
            for kind in ("bpe", "lz78"):
                for d, ours, theirs in zip(row["dict_sizes"], row[kind], SPEC_TABLE[key][kind]):
                    cells[f"k={src.k} {kind} d={d}"] = {"spec": theirs, "ours": round(ours, 4), "diff": round(ours - theirs, 4)}
                    if d >= MIN_DICT:
                        diffs.append(abs(ours - theirs))
        return {"cells": cells, "max_abs_diff_d_ge_32": round(max(diffs), 4) if diffs else None,
                "comparable": list(cfg.dict_sizes) == list(SPEC_DICT_SIZES)
                and all(getattr(cfg, k) == v for k, v in SPEC_PROTOCOL.items())}

    # -- figures ------------------------------------------------------------------------------------
    @staticmethod
    def _figures(cfg: TokenizationConfig, probe: TokenizationConfig | None, out: Path, sources: list[MarkovSource], cb: list[dict[str, Any]],
                 runs: dict[str, dict[str, Any]]) -> list[str]:
        plt = pyplot()
        names = []
        n = len(sources)
        fig, axes = plt.subplots(1, n, figsize=(5.2 * n, 4.4), squeeze=False)
        for i, (ax, src, row) in enumerate(zip(axes[0], sources, cb)):
            ds = row["dict_sizes"]
            ax.axhline(src.unigram_entropy, c="gray", ls="--", label=f"character unigram H(pi) = {src.unigram_entropy:.3f}")
            ax.axhline(src.entropy_rate, c="k", ls="-", lw=1, label=f"entropy rate H_inf = {src.entropy_rate:.3f}")
            ax.plot(ds, row["bpe"], "o-", c="C0", label="BPE token unigram (counts)")
            ax.plot(ds, row["lz78"], "s-", c="C1", label="LZ78 token unigram (counts)")
            tr = sorted((r for r in runs.values() if r["source"] == i and r["tokenizer"] != "char" and r["model"] == "paper"),
                        key=lambda r: r["dict_size"])
            if tr:
                ax.plot([r["dict_size"] for r in tr], [r["final_loss_per_char"] for r in tr], "^-", c="C3", ms=8,
                        label=f"transformer on {tr[0]['tokenizer'].upper()} tokens")
            for r in runs.values():
                if r["source"] == i and (r["tokenizer"] == "char" or r["model"] == "probe"):
                    paper = r["model"] == "paper"
                    what = "characters" if r["tokenizer"] == "char" else f"{r['tokenizer'].upper()} tokens"
                    ax.plot([r["dict_size"]], [r["final_loss_per_char"]], "*" if r["tokenizer"] == "char" else "D",
                            ms=14 if r["tokenizer"] == "char" else 8, c="C2" if paper else "C4",
                            mfc="C2" if paper else "none",
                            label=f"{'transformer' if paper else 'larger transformer (probe)'} on {what} (d = {r['dict_size']})")
            ax.set_xscale("log", base=2)
            ax.set_xlabel("dictionary size d")
            ax.set_ylabel("cross-entropy (nats per character)")
            ax.set_title(src.cfg.label)
            ax.legend(fontsize=7.5)
            ax.grid(alpha=0.3)
        fig.suptitle("Cross-entropy per character vs dictionary size (test text; transformers: eval set)", fontsize=10)
        names.append(save_figure(fig, out, "cross_entropy_vs_dictionary.png"))

        trained = [i for i in range(n) if any(r["source"] == i for r in runs.values())]
        if trained:
            fig, axes = plt.subplots(1, len(trained), figsize=(5.5 * len(trained), 4.2), squeeze=False)
            for ax, i in zip(axes[0], trained):
                src = sources[i]
                for j, r in enumerate(sorted((r for r in runs.values() if r["source"] == i),
                                             key=lambda r: (r["tokenizer"] != "char", r["model"], r["dict_size"]))):
                    ev = r["evals"]
                    lab = "characters" if r["tokenizer"] == "char" else f"{r['tokenizer'].upper()} d={r['dict_size']}"
                    if r["model"] == "probe":
                        lab = f"{lab}, larger model ({probe.model.n_layers} layers, d_model {probe.model.d_model})"
                    ax.plot([e["step"] for e in ev], [e["loss_per_char"] for e in ev], c=f"C{j}",
                            ls="--" if r["model"] == "probe" else "-", label=lab)
                ax.axhline(src.unigram_entropy, c="gray", ls="--", label="character unigram")
                ax.axhline(src.entropy_rate, c="k", lw=1, label="entropy rate")
                ax.set_ylim(src.entropy_rate - 0.05, max(src.unigram_entropy + 0.15, src.entropy_rate + 0.5))
                ax.set_xlabel("step")
                ax.set_ylabel("eval loss (nats per character)")
                ax.set_title(f"{src.cfg.label}: training ({cfg.model.n_layers} layer, d_model {cfg.model.d_model})")
                ax.legend(fontsize=8)
                ax.grid(alpha=0.3)
            names.append(save_figure(fig, out, "training.png"))
        return names


def self_unigram_pairs(cfg: TokenizationConfig, sources: list[MarkovSource], cb: list[dict[str, Any]],
                       runs: dict[str, dict[str, Any]]) -> dict[str, tuple[float, float]]:
    """Per (source, d) of the base-size token models: (transformer loss per char, count-based token unigram)."""
    pairs = {}
    for r in runs.values():
        if r["tokenizer"] == "char" or r["model"] != "paper":
            continue
        row = cb[r["source"]]
        uni = row[r["tokenizer"]][row["dict_sizes"].index(r["dict_size"])]
        pairs[f"{sources[r['source']].cfg.label}, d={r['dict_size']}"] = (r["final_loss_per_char"], uni)
    return pairs


def _shrinks(gaps: list[float], tol: float = MONOTONE_TOL) -> bool:
    """Non-increasing within ``tol`` step to step, and the last strictly below the first."""
    return all(b <= a + tol for a, b in zip(gaps, gaps[1:])) and gaps[-1] < gaps[0]


def _unless_empty(judged: Any, ok: bool, words: str) -> Rule:
    """``is_true(ok, words)``, or not comparable when nothing was measured (``judged`` is empty)."""
    return is_true(ok, words) if judged else not_comparable(f"{words}; nothing at this config to judge it on")
