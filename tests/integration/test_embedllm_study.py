import json

import numpy as np
import pytest

from lmlab.routing import ROUTERS
from lmlab.routing.base import Router, observed_mean
from lmlab.routing.embedllm import EmbedLLMConfig
from lmlab.studies import STUDIES
from lmlab.studies.embedllm import EmbedLLMStudyConfig
from lmlab.zoo import ZooConfig, build_zoo

MICRO_ZOO = ZooConfig(families=("markov", "reversal"), questions_per_family=20, mixes=("markov", "reversal"),
                      sizes=("1x8", "1x16"), budgets=(3,))


@pytest.fixture(scope="module")
def zoo_cache(tmp_path_factory):
    root = tmp_path_factory.mktemp("zoo")
    m, info = build_zoo(MICRO_ZOO, root, progress=False)
    assert info["trained_now"] == 4 and not info["reused_matrix"]
    return root, m


def micro(cache, **kw):
    return EmbedLLMStudyConfig(zoo=MICRO_ZOO, cache_dir=str(cache), progress=False,
                               router=EmbedLLMConfig(dim=8, epochs=2, batch_size=32),
                               embedding_router=EmbedLLMConfig(dim=8, epochs=2, batch_size=32, lr=1e-3),
                               knn_k_grid=(1, 3), forecast_few=(2, 4), **kw)


@pytest.mark.slow
def test_zoo_build_resumes_to_the_same_matrix(tmp_path, zoo_cache):
    with pytest.raises(RuntimeError, match="stopped after 1 new models"):
        build_zoo(MICRO_ZOO, tmp_path, progress=False, max_models=1)
    resumed, info = build_zoo(MICRO_ZOO, tmp_path, progress=False)
    assert info["trained_now"] == 3 and not info["reused_matrix"]
    assert resumed.labels.tolist() == zoo_cache[1].labels.tolist()  # same as the uninterrupted build
    again, info = build_zoo(MICRO_ZOO, tmp_path, progress=False)
    assert info["reused_matrix"] and again.labels.tolist() == resumed.labels.tolist()
    assert resumed.model_attributes["mix"] == ["markov", "markov", "reversal", "reversal"]


class WorstModelRouter(Router):
    """A router added by a test: this class and one registry line (``registered_router``). It forecasts
    1 - each model's training accuracy for every question (the worst model wins); ``from_study`` reads the
    study config (an odd seed turns the inversion off)."""

    name = "test-worst"

    def __init__(self, invert: bool = True):
        super().__init__()
        self.invert = invert

    @classmethod
    def from_study(cls, cfg):
        return cls(invert=cfg.seed % 2 == 0)

    def _fit(self, matrix, train_questions):
        self.p = observed_mean(matrix.labels[:, train_questions], axis=1)

    def _proba_index(self, q):
        p = 1 - self.p if self.invert else self.p
        return np.tile(p, (len(q), 1))


@pytest.fixture
def registered_router():
    ROUTERS.register("test-worst", f"{__name__}:WorstModelRouter")
    yield "test-worst"
    ROUTERS.entries.pop("test-worst")


@pytest.mark.slow
def test_micro_study_end_to_end(tmp_path, zoo_cache, registered_router):
    out = tmp_path / "run"
    cfg = micro(zoo_cache[0])
    cfg = cfg.replace(routers=cfg.routers + (registered_router,))
    s = STUDIES.get("embedllm")().run(cfg, out)
    d = json.loads((out / "summary.json").read_text())
    ids = [c["id"] for c in d["claims"]]
    assert ids == ["correctness_forecast", "mf_beats_knn", "router_beats_single_best", "router_beats_weighted",
                   "routing_throughput", "benchmark_forecast", "probe_training_task", "probe_ablation"]
    assert all(c["status"] in ("pass", "fail") for c in d["claims"])
    for f in s.figures:
        assert (out / f).stat().st_size > 1000
    assert d["metrics"]["zoo"]["n_models"] == 4 and d["metrics"]["zoo"]["n_questions"] == 40
    assert d["metrics"]["zoo"]["reused_matrix"]  # the fixture's cache
    r = d["metrics"]["route_accuracy_test"]
    assert r["oracle"] >= max(r.values()) - 1e-9
    # the test's router, named in cfg.routers, is built, fitted, scored and routed by the unchanged study
    assert "test-worst" in d["metrics"]["correctness_accuracy_test"] and "test-worst" in d["metrics"]["correctness_accuracy_val"]
    assert set(d["metrics"]["knn_val_by_k"]) == {"1", "3"} and d["metrics"]["knn_k_val"] in (1, 3)
    assert (out / "embedllm_router.pt").exists() and (out / "matrix.npz").exists()


class FakeEmbedder:
    """Deterministic stand-in for MiniLM: a hashed bag of characters, unit norm."""

    name = "fake"

    def encode(self, texts):
        out = np.zeros((len(texts), 16), dtype=np.float32)
        for i, t in enumerate(texts):
            for j, ch in enumerate(t):
                out[i, (ord(ch) * 7 + j) % 16] += 1
        return out / np.linalg.norm(out, axis=1, keepdims=True)


@pytest.mark.slow
def test_sentence_embedder_features(monkeypatch):
    """question_features='embedder' embeds the question text with lmlab.lm.embed.load_embedder (faked here)."""
    from lmlab.lm import embed
    from lmlab.routing import ROUTERS
    from lmlab.routing.data import CorrectnessMatrix
    from lmlab.studies.embedllm import question_features

    calls = []

    def fake_load(path=None, device="cpu"):
        calls.append(path)
        return FakeEmbedder()

    monkeypatch.setattr(embed, "load_embedder", fake_load)
    texts = [f"[{'ab'[j % 2]}] question {j}" for j in range(30)]
    m = CorrectnessMatrix(np.array([[j % 2 for j in range(30)], [1 - j % 2 for j in range(30)]]), ["a", "b"],
                          question_text=texts, benchmarks=["ab"[j % 2] for j in range(30)])
    cfg = EmbedLLMStudyConfig(zoo=MICRO_ZOO, question_features="embedder", embedder="/some/dir")
    x, desc = question_features(cfg, m)
    assert calls == ["/some/dir"] and x.shape == (30, 16) and desc == "sentence embeddings (fake)"
    r = ROUTERS.get("knn")(k=3).fit(m, np.arange(20), x)
    assert r.choose(25) in ("a", "b")


@pytest.mark.slow
def test_stages_record_computed_then_reused(tmp_path, caplog):
    """summary.json's stages: the zoo matrix and each saved router, computed on the first run, reused (same
    fingerprint) on the second; a control run into the same directory refits the routers and says why."""
    import logging

    study = STUDIES.get("embedllm")()
    cfg = micro(tmp_path / "cache", routers=("embedllm", "knn", "single-best"), n_boot=50, throughput_models=50)
    first = study.run(cfg, tmp_path / "run")
    again = study.run(cfg, tmp_path / "run")
    names = {"zoo", "router:embedllm", "router:embedllm-embedding-config"}
    assert set(first.stages) == names == set(again.stages)
    for n in names:
        assert first.stages[n]["computed"] and not again.stages[n]["computed"], n
        assert first.stages[n]["fingerprint"] == again.stages[n]["fingerprint"], n
    assert again.stages["zoo"]["reason"] == "reused: 4 entries with the same fingerprint"
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["stages"] == again.to_dict()["stages"]
    with caplog.at_level(logging.WARNING, logger="lmlab.cache"):
        control = study.run(cfg, tmp_path / "run", control=True)
    assert not control.stages["zoo"]["computed"]  # the matrix is shuffled after it is read
    assert control.stages["router:embedllm"]["reason"] == "recomputed because config changed; input data changed"
    assert any("embedllm_router.pt: recomputed because" in r.getMessage() for r in caplog.records)


def test_routing_figure_draws_each_router_once():
    from lmlab.studies.embedllm import route_bars

    routes = {name: {"route_accuracy": 0.5 + i / 100, "weighted_baseline": 0.4}
              for i, name in enumerate(["embedllm", "knn", "mf", "single-best", "random", "oracle",
                                        "embedllm-embedding-config"])}
    bars = route_bars(routes, single_best=routes["single-best"]["route_accuracy"])
    labels = [b[0] for b in bars]
    assert len(labels) == len(set(labels)) == 8  # 7 routers (single best once) + the weighted baseline
    assert [b[1] for b in bars].count(routes["single-best"]["route_accuracy"]) == 1
