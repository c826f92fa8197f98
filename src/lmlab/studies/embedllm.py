"""EmbedLLM: compact model embeddings from a correctness matrix, on a model zoo built with the lab
(Zhuang et al., ICLR 2025, arXiv 2410.02223).

What this study does, in order:

1. **Zoo** (:mod:`lmlab.zoo`): trains many small TinyTransformers (training mix x size x budget)
   on the lab's tasks and asks each one every question of a shared bank drawn from all tasks; the 0/1
   matrix is cached by the zoo config and the code it depends on, so a rerun reuses it.
2. **Question features**: the bag of tokens of each question (EmbedLLM's projection of it is a learned
   token table, see :func:`lmlab.zoo.bag_of_tokens`), or sentence embeddings of the question text
   (``question_features="embedder"``, all-MiniLM-L6-v2 by default).
3. **Split** 80/10/10 by question (stratified by task), as in the paper.
4. **Routers** (:data:`lmlab.routing.ROUTERS`): EmbedLLM's encoder-decoder, per-model KNN (the paper's
   k = 131, and k chosen on validation), matrix factorisation (SVD + ridge), single best model, random,
   oracle. Correctness-forecast accuracy and route accuracy on the held-out questions, the paper's
   weighted baseline, routing decisions per second.
5. **Benchmark forecasting from a few questions**: EmbedLLM is retrained without a held-out quarter of the
   models; each held-out model is then placed in the embedding space from its answers to a few training
   questions, and its accuracy on each task's test questions is forecast, against the accuracy on those
   few questions and against the average known model.
6. **Probing**: a linear probe (cross-validated logistic regression) on the model embeddings predicts each
   model's training mix; and, per task, EmbedLLM is retrained with that task's questions removed to see
   whether the probe for "trained on this task" gets worse (the paper's ablation).
7. Figures: PCA and t-SNE of the model embeddings coloured by training mix; routing accuracy bars; the
   per-task accuracy of every zoo model.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from lmlab.config import Config, ConfigError
from lmlab.io import file_stage, mark_file
from lmlab.routing.embedllm import EmbedLLMConfig
from lmlab.zoo import ZooConfig
from lmlab.studies.base import (Claim, Result, Study, all_of, at_least, ci_excludes, greater, is_true, not_comparable,
                                pyplot, save_figure)

MAIN_ROUTER = "embedllm"  # the study's subject: the other routers are its baselines
# The paper's numbers and claim thresholds.
PAPER_DECISIONS_PER_S = 750  # routing_throughput: "> 750 decisions per second" [secondary]
MIN_DECISIONS_PER_S = PAPER_DECISIONS_PER_S  # routing_throughput, measured with THROUGHPUT_MODELS models
THROUGHPUT_MODELS = 1000  # routing_throughput: a synthetic correctness matrix of this many models
PROBE_MARGIN = 0.3  # probe_training_task (and the condition of probe_ablation): probe accuracy >= chance + this
# correctness_forecast, mf_beats_knn, router_beats_*: a paired bootstrap over the test questions (95%) of the
# per-question difference lies above 0


@dataclass(frozen=True)
class EmbedLLMStudyConfig(Config):
    seed: int = 42  # the split and the routers (the reference code's seed)
    zoo: ZooConfig = field(default_factory=lambda: ZooConfig(
        questions_per_family=1250, sizes=("1x16", "1x32", "2x32", "2x64"), budgets=(300, 1000, 3000),
        mixes=("two-hop", "reversal", "markov", "bigram-backcopy", "two-hop+reversal", "markov+bigram-backcopy",
               "all")))
    cache_dir: str | None = None  # default $LMLAB_CACHE (~/.cache/lmlab): zoo.sqlite, zoo-runs/
    # The reference defaults; with the zoo's few entries (~100k instead of 3.2M) 50 epochs at lr 1e-4 are
    # only ~2,500 Adam steps, see docs/studies/embedllm.md for what that does.
    router: EmbedLLMConfig = field(default_factory=EmbedLLMConfig)
    # For the uses of the embeddings themselves (forecasting, probing): the same network at lr 1e-3. The zoo
    # matrix gives 25 steps per epoch, 1,250 in 50 epochs (the paper's ~79,000): at lr 1e-4 the rows of P move
    # ~0.1 from their N(0, 1) initialisation and stay mostly noise. Its routing numbers are reported too.
    embedding_router: EmbedLLMConfig = field(default_factory=lambda: EmbedLLMConfig(lr=1e-3))
    # lmlab.routing.ROUTERS names; each class builds its router from this config (Router.from_study), and a
    # router with a tuned hyperparameter (knn: k over knn_k_grid) also runs as "<name>-val", tuned on validation
    routers: tuple[str, ...] = ("embedllm", "knn", "mf", "single-best", "random", "oracle")
    question_features: Literal["tokens", "embedder"] = "tokens"
    embedder: str | None = None  # a sentence-transformers directory; None: the MiniLM wheel
    split: tuple[float, float, float] = (0.8, 0.1, 0.1)
    knn_k: int = 131
    knn_k_grid: tuple[int, ...] = (5, 15, 45, 131)
    knn_metric: str = "euclidean"  # the reference code's KNeighborsClassifier default (lmlab's KNNRouter: cosine)
    n_boot: int = 1000  # paired bootstrap over test questions
    throughput_models: int = THROUGHPUT_MODELS
    shuffle_labels: bool = False  # the negative control: permute each model's labels over the training questions
    mf_rank: int = 8
    forecast_holdout: float = 0.25  # share of zoo models held out for forecasting
    forecast_few: tuple[int, ...] = (8, 16, 32, 64)
    ablate_probe: bool = True  # retrain without each task's questions, probe "trained on it"
    progress: bool = True

    def validate(self) -> None:
        if abs(sum(self.split) - 1) > 1e-6 or min(self.split) <= 0:
            raise ConfigError(f"EmbedLLMStudyConfig.split must be 3 positive shares summing to 1, got {self.split}")
        if self.knn_k < 1 or any(k < 1 for k in self.knn_k_grid) or self.mf_rank < 1:
            raise ConfigError("EmbedLLMStudyConfig: knn_k, knn_k_grid and mf_rank must be >= 1")
        if self.knn_metric not in ("euclidean", "cosine"):
            raise ConfigError(f"EmbedLLMStudyConfig.knn_metric: {self.knn_metric!r}; use 'euclidean' (the paper's "
                              "code) or 'cosine'")
        if self.n_boot < 10 or self.throughput_models < 2:
            raise ConfigError("EmbedLLMStudyConfig: n_boot must be >= 10 and throughput_models >= 2")
        if not 0 < self.forecast_holdout < 1:
            raise ConfigError(f"EmbedLLMStudyConfig.forecast_holdout must be in (0, 1), got {self.forecast_holdout}")
        if not self.forecast_few or min(self.forecast_few) < 1:
            raise ConfigError("EmbedLLMStudyConfig.forecast_few must list question counts >= 1")
        from lmlab.routing import ROUTERS

        ROUTERS.check(self.routers, "EmbedLLMStudyConfig.routers")
        if MAIN_ROUTER not in self.routers:
            raise ConfigError(f"EmbedLLMStudyConfig.routers must list '{MAIN_ROUTER}' (the study's subject)")


def question_features(cfg: EmbedLLMStudyConfig, m: Any) -> tuple[np.ndarray, str]:
    """(Q, D) features of the zoo's questions and a description."""
    if cfg.question_features == "tokens":
        from lmlab.zoo import zoo_features

        return zoo_features(m), "bag of tokens (learned token table)"
    from lmlab.lm import embed

    emb = embed.load_embedder(cfg.embedder)
    return emb.encode(m.question_text), f"sentence embeddings ({emb.name})"


class EmbedLLMStudy(Study):
    name = "embedllm"
    title = "EmbedLLM: model embeddings, correctness forecasting and routing over an in-house model zoo"
    paper = "Zhuang et al., EmbedLLM: Learning Compact Representations of Large Language Models, ICLR 2025, arXiv 2410.02223"
    config_cls = EmbedLLMStudyConfig

    def quick_config(self) -> EmbedLLMStudyConfig:
        """40 models (5 mixes x 4 sizes up to 2x48 x 2 budgets of 150 / 450 steps) x 1,600 questions, about
        3 minutes of training on a quiet 2-core machine, and the probe ablation (EmbedLLM retrained once per task)."""
        return EmbedLLMStudyConfig(zoo=ZooConfig())

    # 12 models (3 mixes x 2 sizes x 2 budgets of 20 / 60 steps) x 120 questions, routers trained for 3 epochs
    tiny = ("zoo.questions_per_family=30", 'zoo.mixes=["two-hop","markov","all"]', 'zoo.sizes=["1x16","1x32"]',
            "zoo.budgets=[20,60]", "router.epochs=3", "embedding_router.epochs=3", "knn_k=5", "knn_k_grid=[3,5]",
            "forecast_few=[4,8]", "n_boot=100", "throughput_models=50", "progress=false")

    def control_config(self, cfg: EmbedLLMStudyConfig) -> EmbedLLMStudyConfig:
        """Each model's correctness labels permuted over the training questions (accuracy kept, which question
        it got right lost): every router, the forecast and the probes learn from the shuffled matrix."""
        return cfg.replace(shuffle_labels=True)

    def execute(self, cfg: EmbedLLMStudyConfig, out: Path, quick: bool, resume: bool) -> Result:
        from lmlab.routing import ROUTERS
        from lmlab.routing.data import save_matrix, split_questions
        from lmlab.routing.metrics import correctness_accuracy, route_accuracy
        from lmlab.zoo import build_zoo

        t0 = time.perf_counter()
        m, zoo_info = build_zoo(cfg.zoo, cfg.cache_dir, progress=cfg.progress)
        zoo_seconds = time.perf_counter() - t0
        save_matrix(m, out / "matrix.npz")
        x, feat_name = question_features(cfg, m)
        tr, va, te = split_questions(m.n_questions, cfg.split, seed=cfg.seed, strata=m.benchmarks)
        if cfg.shuffle_labels:  # the control: permute each model's labels over the training questions
            import dataclasses

            labels = m.labels.copy()
            rng = np.random.default_rng(cfg.seed + 1)
            for i in range(m.n_models):
                labels[i, tr] = labels[i, rng.permutation(tr)]
            m = dataclasses.replace(m, labels=labels)

        stages: dict[str, Any] = {"zoo": zoo_info.pop("stage")}
        from lmlab.io import fingerprint

        # what a saved router was fitted on: the (possibly shuffled) labels, the question features, the split
        data_key = fingerprint(m.labels.tobytes(), np.ascontiguousarray(x).tobytes(), tr.tobytes(), m.model_names)

        # -- routers ---------------------------------------------------------------------------------
        timings: dict[str, float] = {}
        routers: dict[str, Any] = {}
        forecasting: list[str] = []  # routers whose correctness forecast is scored, on test and validation
        tuned: dict[str, Any] = {}  # per router with a tuned hyperparameter: the validation table and the pick
        val_tuned: list[str] = []  # "<name>-val": scored on test only (validation picked them)
        for name in cfg.routers:
            cls = ROUTERS.get(name)
            t = time.perf_counter()
            path = out / f"{name}_router.pt"
            fp = _router_fingerprint(cls, cfg, data_key) if cls.checkpoint else None
            st = file_stage(path, fp, resume) if fp is not None else None
            if st is not None and not st["computed"]:
                routers[name] = cls.load(path, x)
            else:
                routers[name] = cls.from_study(cfg).fit(m, tr, x)
                if fp is not None:
                    routers[name].save(path)
                    mark_file(path, fp)
            if st is not None:
                stages[f"router:{name}"] = st
            timings[name] = time.perf_counter() - t
            forecasting += [name] if cls.forecasts else []
            cands = cls.candidates(cfg)
            if cands:
                on_val = {v: correctness_accuracy(r.fit(m, tr, x), m, va) for v, r in cands.items()}
                order = list(cands)
                pick = max(on_val, key=lambda v: (on_val[v], -order.index(v)))  # ties: the earlier grid value
                routers[f"{name}-val"] = cands[pick]
                val_tuned.append(f"{name}-val")
                tuned[name] = {f"{name}_val_by_{cls.tuned}": {str(v): a for v, a in on_val.items()},
                               f"{name}_{cls.tuned}_val": pick}
        acc = {n: correctness_accuracy(routers[n], m, te) for n in routers if n in forecasting or n in val_tuned}
        acc_val = {n: correctness_accuracy(routers[n], m, va) for n in forecasting}
        routes = {n: route_accuracy(r, m, te) for n, r in routers.items()}
        best = int(np.argmax(m.accuracy(tr)))
        single_best_test = float(m.accuracy(te)[best])
        best_on_test = float(m.accuracy(te).max())
        throughput, tp_info = _synthetic_throughput(cfg, x.shape[1])
        paired = _paired_cis(routers, m, tr, te, cfg)
        ecfg = cfg.embedding_router.replace(seed=cfg.seed, progress=cfg.progress)
        epath = out / "embedllm_embedding_router.pt"
        efp = _router_fingerprint(ROUTERS.get(MAIN_ROUTER), cfg, data_key, ecfg.to_dict())
        stages["router:embedllm-embedding-config"] = est = file_stage(epath, efp, resume)
        if not est["computed"]:
            emb_router = ROUTERS.get(MAIN_ROUTER).load(epath, x)
        else:
            emb_router = ROUTERS.get(MAIN_ROUTER)(ecfg).fit(m, tr, x)
            emb_router.save(epath)
            mark_file(epath, efp)
        acc["embedllm-embedding-config"] = correctness_accuracy(emb_router, m, te)
        routes["embedllm-embedding-config"] = route_accuracy(emb_router, m, te)

        # -- forecasting and probing ------------------------------------------------------------------
        forecast = self._forecast(cfg, m, x, tr, te, ecfg)
        probe = self._probe(cfg, m, x, tr, ecfg, emb_router.model_embeddings)
        if "mix" in probe:
            probe["mix_spec_default_router"] = _probe_cv(routers[MAIN_ROUTER].model_embeddings,
                                                         m.model_attributes["mix"], cfg.seed)

        claims = self._claims(cfg, acc, routes, single_best_test, throughput, forecast, probe, m, te, paired, tp_info)
        figures = self._figures(out, m, emb_router, routes, single_best_test, te)
        metrics = {
            "zoo": {**zoo_info, "n_models": m.n_models, "n_questions": m.n_questions, "seconds": round(zoo_seconds, 1),
                    "mean_accuracy_by_task": {b: float(m.accuracy(m.benchmark_index(b)).mean()) for b in m.benchmark_names()}},
            "question_features": {"kind": cfg.question_features, "description": feat_name, "dim": int(x.shape[1])},
            "split": {"train": len(tr), "val": len(va), "test": len(te)},
            "correctness_accuracy_test": acc, "correctness_accuracy_val": acc_val,
            **{k: v for t in tuned.values() for k, v in t.items()},
            "route_accuracy_test": {n: r["route_accuracy"] for n, r in routes.items()},
            "weighted_baseline_test": {n: r["weighted_baseline"] for n, r in routes.items()},
            "route_counts_embedllm": dict(zip(m.model_names, routes[MAIN_ROUTER]["counts"])),
            "single_best_model": m.model_names[best], "single_best_test_accuracy": single_best_test,
            "best_model_on_test_accuracy": best_on_test,
            "routing_decisions_per_second": throughput, "throughput_setup": tp_info,
            "paired_bootstrap_test_questions": paired, "shuffle_labels": cfg.shuffle_labels,
            "knn_metric": cfg.knn_metric,
            "embedllm_loss_by_epoch": [h["train_loss"] for h in routers[MAIN_ROUTER].history],
            "embedding_router_loss_by_epoch": [h["train_loss"] for h in emb_router.history],
            "fit_seconds": {k: round(v, 2) for k, v in timings.items()},
            "forecast": forecast, "probe": probe,
        }
        return Result(claims, metrics, figures, "embedllm/1+" + str(zoo_info["hash"]), stages=stages)

    # -- benchmark forecasting from a few questions --------------------------------------------------
    @staticmethod
    def _forecast(cfg: EmbedLLMStudyConfig, m: Any, x: np.ndarray, tr: np.ndarray, te: np.ndarray,
                  rcfg: EmbedLLMConfig) -> dict[str, Any]:
        from lmlab.routing.embedllm import EmbedLLMRouter

        rng = np.random.default_rng(cfg.seed)
        mixes = np.array(m.model_attributes.get("mix", ["?"] * m.n_models))
        held = []
        for mix in sorted(set(mixes)):  # a quarter of every mix, so no mix is unknown
            idx = rng.permutation(np.nonzero(mixes == mix)[0])
            held += idx[: max(1, round(cfg.forecast_holdout * len(idx)))].tolist()
        held = np.sort(np.array(held))
        known = np.setdiff1d(np.arange(m.n_models), held)
        router = EmbedLLMRouter(rcfg.replace(progress=False)).fit(m.select(models=known), tr, x)
        benches = m.benchmark_names()
        truth = np.array([[m.accuracy(np.intersect1d(te, m.benchmark_index(b)))[i] for b in benches] for i in held])
        known_mean = np.array([m.accuracy(np.intersect1d(te, m.benchmark_index(b)))[known].mean() for b in benches])
        known_train_mean = np.array([m.accuracy(np.intersect1d(tr, m.benchmark_index(b)))[known].mean() for b in benches])
        out: dict[str, Any] = {"held_out_models": [m.model_names[i] for i in held], "by_n": {}}
        for n in cfg.forecast_few:
            pred_e, pred_f = [], []
            for row, i in enumerate(held):
                qs = rng.choice(tr, size=min(n, len(tr)), replace=False)
                y = m.labels[i, qs]
                u = router.fit_new_model(qs, y)
                pe, pf = [], []
                for b in benches:
                    bt = np.intersect1d(te, m.benchmark_index(b))
                    pe.append(float(router.proba_for_embedding(u, bt).mean()))
                    bq = np.isin(qs, m.benchmark_index(b))
                    # The few answers on this task, shrunk to the known models' average by one pseudo-answer
                    # (with no answer on the task it is that average).
                    pf.append(float((y[bq].sum() + known_train_mean[benches.index(b)]) / (bq.sum() + 1)))
                pred_e.append(pe)
                pred_f.append(pf)
            pred_e, pred_f = np.array(pred_e), np.array(pred_f)
            out["by_n"][str(n)] = {
                "mae_embedllm": float(np.abs(pred_e - truth).mean()),
                "mae_few_answers": float(np.abs(pred_f - truth).mean()),
                "mae_known_mean": float(np.abs(known_mean[None, :] - truth).mean()),
                "corr_embedllm": _corr(pred_e.ravel(), truth.ravel()),
                "corr_few_answers": _corr(pred_f.ravel(), truth.ravel()),
            }
        return out

    # -- probing ---------------------------------------------------------------------------------------
    def _probe(self, cfg: EmbedLLMStudyConfig, m: Any, x: np.ndarray, tr: np.ndarray, rcfg: EmbedLLMConfig,
               emb: np.ndarray) -> dict[str, Any]:
        from lmlab.routing.embedllm import EmbedLLMRouter
        from lmlab.zoo import mix_families

        mixes = m.model_attributes.get("mix")
        if mixes is None:
            return {"skipped": "no training-mix attribute"}
        out: dict[str, Any] = {"mix": _probe_cv(emb, mixes, cfg.seed)}
        out["mix_on_random_embeddings"] = _probe_cv(np.random.default_rng(cfg.seed).normal(size=emb.shape), mixes, cfg.seed)
        fams = cfg.zoo.families
        out["trained_on"] = {}
        for f in fams:
            lab = [f in mix_families(mx, fams) for mx in mixes]
            entry = {"full": _probe_cv(emb, lab, cfg.seed)}
            if cfg.ablate_probe:
                keep = np.array([q for q in tr if m.benchmarks[q] != f])
                r = EmbedLLMRouter(rcfg.replace(progress=False)).fit(m, keep, x)
                entry["without_task_questions"] = _probe_cv(r.model_embeddings, lab, cfg.seed)
            out["trained_on"][f] = entry
        return out

    # -- claims ----------------------------------------------------------------------------------------
    @staticmethod
    def _claims(cfg: EmbedLLMStudyConfig, acc: dict[str, float], routes: dict[str, Any], single_best: float,
                throughput: float, forecast: dict[str, Any], probe: dict[str, Any], m: Any, te: np.ndarray,
                paired: dict[str, Any], tp_info: dict[str, Any]) -> list[Claim]:
        r = {n: v["route_accuracy"] for n, v in routes.items()}

        def rule(need: list[str], test: Any) -> Any:
            """``test()`` when every router it compares with is in cfg.routers, else not comparable."""
            missing = [n for n in need if n not in r]
            return (not_comparable(f"not tested: {', '.join(missing)} not in EmbedLLMStudyConfig.routers") if missing
                    else test())

        main = MAIN_ROUTER
        claims = [
            Claim.judged("correctness_forecast", "EmbedLLM predicts whether a model answers a held-out question correctly",
                         paper_value="mid-0.7s on the 112-LLM matrix", source="[recollection]",
                         measured={"embedllm": acc[main], "per_model_majority": acc.get("single-best")},
                         rule=rule(["single-best"], lambda: ci_excludes(
                             paired["forecast_vs_majority"]["ci95"], 0.0, side="above",
                             what="per-question test accuracy of EmbedLLM minus the per-model majority label's (each "
                                  "model's training accuracy > 0.5 or not), paired bootstrap over test questions; the "
                                  "paper's number is for other data and is not compared"))),
            Claim.judged("mf_beats_knn", f"EmbedLLM's correctness forecast beats per-model KNN (k = {cfg.knn_k})",
                         paper_value="MF ahead by about 1-3 points", source="[recollection]",
                         measured={"embedllm": acc[main], "knn": acc.get("knn"), "knn_k_chosen_on_val": acc.get("knn-val"),
                                   "gap_points": round(100 * (acc[main] - acc["knn"]), 2) if "knn" in acc else None,
                                   "gap_ci95": paired.get("forecast_vs_knn", {}).get("ci95"),
                                   "knn_metric": cfg.knn_metric},
                         rule=rule(["knn"], lambda: ci_excludes(
                             paired["forecast_vs_knn"]["ci95"], 0.0, side="above",
                             what=f"per-question test accuracy of EmbedLLM minus KNN's (k = {cfg.knn_k}, "
                                  f"{cfg.knn_metric}), paired bootstrap over test questions"))),
            Claim.judged("router_beats_single_best", "Routing each question to the model with the highest predicted "
                         "correctness beats the best single model", paper_value="router higher", source="[recollection]",
                         measured={"route_accuracy": r[main], "single_best": single_best, "oracle": r.get("oracle"),
                                   "random": r.get("random"), "knn_router": r.get("knn"), "mf_router": r.get("mf"),
                                   "embedllm_embedding_config": r["embedllm-embedding-config"],
                                   "gap_points": round(100 * (r[main] - single_best), 2),
                                   "gap_ci95": paired["route_vs_single_best"]["ci95"]},
                         rule=ci_excludes(paired["route_vs_single_best"]["ci95"], 0.0, side="above",
                                          what="per-question correctness of the routed model minus the model best on the "
                                               "training questions, paired bootstrap over test questions")),
            Claim.judged("router_beats_weighted", "... and the weighted baseline (it does not just pick strong models)",
                         paper_value="router higher", source="[code]",
                         measured={"route_accuracy": r[main], "weighted_baseline": routes[main]["weighted_baseline"],
                                   "gap_ci95": paired["route_vs_weighted"]["ci95"]},
                         rule=ci_excludes(paired["route_vs_weighted"]["ci95"], 0.0, side="above",
                                          what="per-question correctness of the routed model minus that model's test "
                                               "accuracy (whose mean is sum_m acc_m count_m / |Q| subtracted from the "
                                               "route accuracy), paired bootstrap over test questions")),
            Claim.judged("routing_throughput", "Routing needs one matrix product per query: > "
                         f"{PAPER_DECISIONS_PER_S} decisions per second",
                         paper_value=f"> {PAPER_DECISIONS_PER_S} decisions/s", source="[secondary]",
                         measured={"decisions_per_second": round(throughput, 1), **tp_info},
                         rule=greater(throughput, MIN_DECISIONS_PER_S,
                                      what=f"decisions/s with Router.choose over {tp_info['n_models']} models (synthetic "
                                           "matrix), one question at a time, 1 CPU thread"),
                         holds_without_training=True,
                         holds_reason="speed of one matrix product per query: it does not depend on what was learned"),
        ]
        n0 = str(sorted(cfg.forecast_few)[len(cfg.forecast_few) // 2])
        f = forecast["by_n"][n0]
        claims.append(Claim.judged(
            "benchmark_forecast", f"A held-out model's per-task accuracy is forecast from its answers to {n0} questions "
            "through the model embeddings better than from those answers alone (embedding_router config)",
            paper_value="model embeddings forecast benchmark performance (qualitative)", source="[secondary]",
            measured={"mae_embedllm": f["mae_embedllm"], "mae_few_answers": f["mae_few_answers"],
                      "mae_known_models_mean": f["mae_known_mean"], "by_n": forecast["by_n"]},
            rule=all_of(greater(f["mae_few_answers"], f["mae_embedllm"], what=f"MAE of the few answers' own (shrunk) "
                                f"per-task accuracy (n = {n0})", than="the embedding forecast's MAE"),
                        greater(f["mae_known_mean"], f["mae_embedllm"], what="MAE of the known models' mean",
                                than="the embedding forecast's MAE"))))
        if "mix" in probe:
            p = probe["mix"]
            claims.append(Claim.judged(
                "probe_training_task", "A linear probe on the model embeddings recovers which task mix a zoo model was "
                "trained on (the analogue of 'code-specialised'; embedding_router config)", paper_value="probes recover model traits (qualitative)",
                source="[secondary]", measured={"probe_accuracy": p["accuracy"], "chance": p["chance"],
                                                "random_embeddings": probe["mix_on_random_embeddings"]["accuracy"],
                                                "spec_default_router": probe["mix_spec_default_router"]["accuracy"]},
                rule=at_least(p["accuracy"], p["chance"] + PROBE_MARGIN,
                              what=f"cross-validated probe accuracy (bar: chance + {PROBE_MARGIN:g}; chance: the largest "
                                   "class's share)")))
            tr_on = probe["trained_on"]
            ablation = ("Removing a task's questions from training degrades the probe for 'trained on that task'")
            if cfg.ablate_probe:
                drops = {f: v["full"]["accuracy"] - v["without_task_questions"]["accuracy"] for f, v in tr_on.items()}
                learned = at_least(p["accuracy"], p["chance"] + PROBE_MARGIN,
                                   what="the mix probe's accuracy on the full embeddings (bar: chance + "
                                        f"{PROBE_MARGIN:g}: the embeddings carry the training data at all)")
                claims.append(Claim.judged(
                    "probe_ablation", ablation, paper_value="the matching probe degrades (qualitative)", source="[secondary]",
                    measured={f: {"full": v["full"]["accuracy"], "without": v["without_task_questions"]["accuracy"],
                                  "chance": v["full"]["chance"]} for f, v in tr_on.items()},
                    rule=all_of(learned, is_true(sum(d > 0 for d in drops.values()) > len(drops) / 2
                                                 and np.mean(list(drops.values())) > 0,
                                                 "the probe accuracy drops (by > 0) for a majority of the tasks, and on "
                                                 "average")),
                    evidence={"drop_by_task": drops}))
            else:
                claims.append(Claim.judged(
                    "probe_ablation", ablation, paper_value="the matching probe degrades (qualitative)",
                    source="[secondary]", measured=None,
                    rule=not_comparable("not run at this config (ablate_probe=false; the full config runs it)")))
        return claims

    # -- figures ---------------------------------------------------------------------------------------
    @staticmethod
    def _figures(out: Path, m: Any, emb_router: Any, routes: dict[str, Any], single_best: float,
                 te: np.ndarray) -> list[str]:
        from sklearn.decomposition import PCA
        from sklearn.manifold import TSNE

        plt = pyplot()
        names = []
        emb = emb_router.model_embeddings
        mixes = m.model_attributes.get("mix", ["?"] * m.n_models)
        steps = np.array(m.model_attributes.get("steps", [1] * m.n_models))
        labels = sorted(set(mixes))
        colors = {mx: plt.cm.tab10(i % 10) for i, mx in enumerate(labels)}
        pca = PCA(n_components=2).fit_transform(emb)
        tsne = TSNE(n_components=2, perplexity=min(10.0, (m.n_models - 1) / 3), random_state=0,
                    init="pca").fit_transform(emb)
        fig, axes = plt.subplots(1, 2, figsize=(12, 5))
        for ax, pts, title in ((axes[0], pca, "PCA"), (axes[1], tsne, "t-SNE")):
            for mx in labels:
                sel = np.array([v == mx for v in mixes])
                ax.scatter(pts[sel, 0], pts[sel, 1], s=20 + 60 * (steps[sel] / steps.max()), color=colors[mx],
                           label=mx, alpha=0.8, edgecolor="k", linewidth=0.3)
            ax.set(title=f"{title} of the model embeddings (marker size: training steps)")
        axes[0].legend(title="training mix", fontsize=8)
        names.append(save_figure(fig, out, "model_embeddings.png"))

        bars = route_bars(routes, single_best)
        fig, ax = plt.subplots(figsize=(9, 4.5))
        ax.bar(range(len(bars)), [b[1] for b in bars], color=[b[2] for b in bars])
        for i, b in enumerate(bars):
            ax.text(i, b[1] + 0.01, f"{b[1]:.3f}", ha="center", fontsize=8)
        ax.set_xticks(range(len(bars)), [b[0] for b in bars], fontsize=8)
        ax.set(ylabel="route accuracy on held-out questions", ylim=(0, 1.08),
               title=f"Routing over {m.n_models} zoo models, {len(te)} test questions")
        names.append(save_figure(fig, out, "routing_accuracy.png"))

        benches = m.benchmark_names()
        grid = np.array([[m.accuracy(m.benchmark_index(b))[i] for b in benches] for i in range(m.n_models)])
        fig, ax = plt.subplots(figsize=(7, max(4, 0.18 * m.n_models)))
        im = ax.imshow(grid, aspect="auto", cmap="viridis", vmin=0, vmax=1)
        ax.set_xticks(range(len(benches)), benches, rotation=20, fontsize=8)
        ax.set_yticks(range(m.n_models), m.model_names, fontsize=5)
        fig.colorbar(im, ax=ax, label="accuracy")
        ax.set(title="Zoo: accuracy of every model on every task's questions")
        names.append(save_figure(fig, out, "zoo_accuracy.png"))
        return names


def _router_fingerprint(cls: Any, cfg: EmbedLLMStudyConfig, data_key: str, router_cfg: Any = None) -> dict[str, Any]:
    """What a saved router depends on: its class's module and the routers' base (code), the study config without
    its progress switch (or ``router_cfg``), and the data it was fitted on (``data_key``)."""
    from lmlab.io import artifact_fingerprint

    def drop(d: Any) -> Any:  # whether a bar is shown changes no weight
        return {k: drop(v) for k, v in d.items() if k != "progress"} if isinstance(d, dict) else d

    return artifact_fingerprint((cls.__module__, "lmlab.routing.base"),
                                drop({"router": cls.name, "study": cfg.to_dict(), "router_cfg": router_cfg}), data_key)


def _synthetic_throughput(cfg: EmbedLLMStudyConfig, feature_dim: int) -> tuple[float, dict[str, Any]]:
    """Decisions per second of EmbedLLM's Router.choose over ``cfg.throughput_models`` models: a synthetic
    correctness matrix (:func:`lmlab.routing.synthetic.synthetic_matrix`) with question features of the study's
    dimension, the router fitted for one Adam step (speed does not depend on the fit)."""
    from lmlab.routing.embedllm import EmbedLLMRouter
    from lmlab.routing.synthetic import synthetic_matrix

    n_q = 600
    sm, sx = synthetic_matrix(cfg.throughput_models, n_q, feature_dim=feature_dim, seed=cfg.seed)
    t = time.perf_counter()
    rcfg = cfg.router.replace(epochs=1, max_steps=1, progress=False, seed=cfg.seed)
    router = EmbedLLMRouter(rcfg).fit(sm, np.arange(400), sx)
    fit_s = time.perf_counter() - t
    rate = _routing_throughput(router, sx[400:])
    return rate, {"n_models": sm.n_models, "feature_dim": int(feature_dim), "n_questions_timed": n_q - 400,
                  "fit_seconds_one_step": round(fit_s, 2)}


def _per_question(router: Any, m: Any, q: np.ndarray) -> np.ndarray:
    """Per test question: the share of observed models whose P(correct) > 0.5 matches their label."""
    from lmlab.routing.data import MISSING

    p = router.predict_proba(np.asarray(q)).T  # (M, n)
    y = m.labels[:, q]
    obs = y != MISSING
    hit = ((p > 0.5) == (y == 1)) & obs
    return hit.sum(0) / np.maximum(obs.sum(0), 1)


def _boot_ci(d: np.ndarray, n_boot: int, seed: int) -> list[float]:
    """Percentile 95% interval of the mean of ``d`` over resampled questions."""
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, len(d), size=(n_boot, len(d)))].mean(1)
    return [round(float(np.quantile(means, 0.025)), 5), round(float(np.quantile(means, 0.975)), 5)]


def _paired_cis(routers: dict[str, Any], m: Any, tr: np.ndarray, te: np.ndarray, cfg: EmbedLLMStudyConfig) -> dict[str, Any]:
    """Paired bootstrap intervals over the test questions for the claims' comparisons."""
    from lmlab.routing.data import MISSING

    main = routers[MAIN_ROUTER]
    out: dict[str, Any] = {}
    acc_main = _per_question(main, m, te)
    for key, other in (("forecast_vs_knn", "knn"), ("forecast_vs_majority", "single-best")):
        if other in routers:
            d = acc_main - _per_question(routers[other], m, te)
            out[key] = {"mean": round(float(d.mean()), 5), "ci95": _boot_ci(d, cfg.n_boot, cfg.seed)}
    y = np.where(m.labels == MISSING, 0, m.labels)
    chosen = main.route(te)
    hit = y[chosen, te].astype(float)
    best = int(np.argmax(m.accuracy(tr)))  # the single best model: best on the training questions
    acc_te = m.accuracy(te)
    for key, d in (("route_vs_single_best", hit - y[best, te]), ("route_vs_weighted", hit - acc_te[chosen])):
        out[key] = {"mean": round(float(d.mean()), 5), "ci95": _boot_ci(d, cfg.n_boot, cfg.seed)}
    return out


def _routing_throughput(router: Any, x: np.ndarray, n: int = 500) -> float:
    """Decisions per second of Router.choose on feature vectors, one question at a time."""
    rows = x[: min(n, len(x))]
    router.choose(rows[0])
    t = time.perf_counter()
    for row in rows:
        router.choose(row)
    return len(rows) / (time.perf_counter() - t)


def _corr(a: np.ndarray, b: np.ndarray) -> float | None:
    if a.std() == 0 or b.std() == 0:
        return None
    return float(np.corrcoef(a, b)[0, 1])


def _probe_cv(emb: np.ndarray, labels: Any, seed: int) -> dict[str, Any]:
    """Cross-validated accuracy of a logistic-regression probe (scikit-learn) on standardised embeddings."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    y = np.asarray([str(v) for v in labels])
    _, counts = np.unique(y, return_counts=True)
    chance = float(counts.max() / len(y))
    folds = int(min(5, counts.min()))
    if folds < 2:
        return {"accuracy": None, "chance": chance, "folds": folds, "note": "a class has fewer than 2 models"}
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))
    pred = cross_val_predict(probe, emb, y, cv=StratifiedKFold(folds, shuffle=True, random_state=seed))
    return {"accuracy": float((pred == y).mean()), "chance": chance, "folds": folds}


def route_bars(routes: dict[str, Any], single_best: float) -> list[tuple[str, float, str]]:
    """(label, route accuracy, colour) for the routing figure: each router once; the single best model is
    the red bar (the ``single-best`` router picks the same model, on the training questions)."""
    look = {"oracle": ("oracle", "gray"), "mf": ("MF router", "tab:green"), "knn": ("KNN k=131", "tab:olive"),
            "knn-val": ("KNN k (val)", "tab:olive"), "random": ("random", "lightgray")}
    bars = [("EmbedLLM\n(spec defaults)", routes[MAIN_ROUTER]["route_accuracy"], "tab:blue"),
            ("EmbedLLM\n(lr 1e-3)", routes["embedllm-embedding-config"]["route_accuracy"], "tab:cyan"),
            ("single best", single_best, "tab:red"),
            ("weighted\nbaseline", routes[MAIN_ROUTER]["weighted_baseline"], "tab:orange")]
    shown = (MAIN_ROUTER, "embedllm-embedding-config", "single-best")
    bars += [(look.get(n, (n, ""))[0], v["route_accuracy"], look.get(n, (n, "tab:purple"))[1])
             for n, v in routes.items() if n not in shown]
    return bars
