import numpy as np
import pytest

from lmlab.routing import ROUTERS
from lmlab.routing.data import CorrectnessMatrix, RoutingDataError, split_questions
from lmlab.routing.embedllm import EmbedLLMConfig, EmbedLLMRouter
from lmlab.routing.knn import KNNRouter
from lmlab.routing.metrics import correctness_accuracy, route_accuracy
from lmlab.routing.synthetic import synthetic_matrix

FAST = EmbedLLMConfig(dim=32, lr=3e-3, batch_size=512, epochs=15, progress=False)


@pytest.fixture(scope="module")
def low_rank():
    m, x = synthetic_matrix(24, 500, rank=4, feature_dim=16, boost=2.5, seed=3)
    tr, va, te = split_questions(m.n_questions, seed=0)
    return m, x, tr, te


@pytest.fixture(scope="module")
def embedllm(low_rank):
    m, x, tr, _ = low_rank
    return EmbedLLMRouter(FAST).fit(m, tr, x)


def test_registry_lists_every_router():
    assert ROUTERS.names() == sorted(["embedllm", "knn", "mf", "single-best", "random", "oracle"])
    for name in ROUTERS.names():
        assert ROUTERS.get(name).name == name


def test_spec_defaults():
    c = EmbedLLMConfig()
    assert (c.dim, c.alpha, c.lr, c.weight_decay, c.batch_size, c.epochs, c.seed) == (232, 0.05, 1e-4, 1e-5, 2048, 50, 42)
    assert KNNRouter().k == 131


@pytest.mark.slow
def test_embedllm_beats_single_best_on_low_rank(low_rank, embedllm):
    m, x, tr, te = low_rank
    single = ROUTERS.get("single-best")().fit(m, tr)
    r_e = route_accuracy(embedllm, m, te)["route_accuracy"]
    r_s = route_accuracy(single, m, te)["route_accuracy"]
    assert r_e > r_s + 0.1, (r_e, r_s)
    assert correctness_accuracy(embedllm, m, te) > correctness_accuracy(single, m, te) + 0.05
    assert embedllm.model_embeddings.shape == (24, 32)


@pytest.mark.slow
def test_baselines_order_on_low_rank(low_rank):
    m, x, tr, te = low_rank
    acc = {n: route_accuracy(ROUTERS.get(n)().fit(m, tr, x), m, te)["route_accuracy"]
           for n in ("oracle", "mf", "knn", "single-best", "random")}
    any_correct = float((m.labels[:, te] == 1).any(0).mean())
    assert acc["oracle"] == pytest.approx(any_correct)
    assert acc["mf"] > acc["single-best"] and acc["knn"] > acc["random"]
    assert acc["oracle"] >= max(acc.values())


def test_knn_matches_per_model_sklearn_classifier(low_rank):
    from sklearn.neighbors import KNeighborsClassifier

    m, x, tr, te = low_rank
    r = KNNRouter(k=7).fit(m, tr, x)
    p = r.predict_proba(te)
    for i in (0, 5):
        ref = KNeighborsClassifier(7, metric="cosine").fit(x[tr], m.labels[i, tr]).predict_proba(x[te])[:, 1]
        np.testing.assert_allclose(p[:, i], ref, atol=1e-6)


@pytest.mark.slow
def test_choose_by_index_and_features_and_candidates(low_rank, embedllm):
    m, x, tr, te = low_rank
    q = int(te[0])
    assert embedllm.choose(q) == embedllm.choose(x[q])
    p = embedllm.predict_proba(np.array([q]))[0]
    cands = [m.model_names[i] for i in (3, 7, 11)]
    assert embedllm.choose(q, cands) == cands[int(np.argmax(p[[3, 7, 11]]))]
    assert Router_choose_generic(embedllm, q, cands) == embedllm.choose(q, cands)
    with pytest.raises(KeyError, match="unknown candidate"):
        embedllm.choose(q, ["nope"])
    assert embedllm.route(te[:5]).shape == (5,)


def Router_choose_generic(router, q, cands):
    from lmlab.routing.base import Router

    return Router.choose(router, np.int64(q), cands)


@pytest.mark.slow
def test_save_load_same_predictions(tmp_path, low_rank, embedllm):
    m, x, tr, te = low_rank
    embedllm.save(tmp_path / "r.pt")
    again = EmbedLLMRouter.load(tmp_path / "r.pt", x)
    np.testing.assert_allclose(again.predict_proba(te), embedllm.predict_proba(te))


@pytest.mark.slow
def test_saved_router_is_plain_data_and_a_pickle_is_refused(tmp_path, low_rank, embedllm):
    import torch

    _, x, _, _ = low_rank
    embedllm.save(tmp_path / "r.pt")
    state = torch.load(tmp_path / "r.pt", weights_only=True)  # plain containers and tensors only
    assert state["model_names"] == list(embedllm.model_names) and sorted(tmp_path.iterdir()) == [tmp_path / "r.pt"]

    class Evil:
        def __reduce__(self):
            return (print, ("ran code",))

    torch.save({"cfg": state["cfg"], "evil": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(ValueError, match="not a router saved by lmlab"):
        EmbedLLMRouter.load(tmp_path / "evil.pt", x)


def test_fit_new_model_from_answers(low_rank, embedllm):
    m, x, tr, te = low_rank
    i = 4
    u = embedllm.fit_new_model(tr, m.labels[i, tr])
    p = embedllm.proba_for_embedding(u, te)
    # A model rebuilt from its answers predicts its own test answers better than the average model does.
    u0 = embedllm.fit_new_model(tr[:0], m.labels[i, tr[:0]])
    p0 = embedllm.proba_for_embedding(u0, te)
    y = m.labels[i, te]
    assert ((p > 0.5) == y).mean() > ((p0 > 0.5) == y).mean()


def test_random_router_is_seeded(low_rank):
    m, x, tr, te = low_rank
    a = ROUTERS.get("random")(seed=5).fit(m, tr).route(te)
    b = ROUTERS.get("random")(seed=5).fit(m, tr).route(te)
    assert a.tolist() == b.tolist() and len(set(a.tolist())) > 3


def test_route_accuracy_and_weighted_baseline_by_hand():
    m = CorrectnessMatrix(np.array([[1, 1, 0, 0], [0, 0, 1, 1]]), ["a", "b"])
    oracle = ROUTERS.get("oracle")().fit(m)
    r = route_accuracy(oracle, m, np.arange(4))
    assert r["route_accuracy"] == 1.0 and r["counts"] == [2, 2] and r["weighted_baseline"] == 0.5
    single = ROUTERS.get("single-best")().fit(m, np.array([0, 1, 2]))  # b: 1/3, a: 2/3
    assert single.choose(3) == "a" and single.choose(3, ["b"]) == "b"


def test_feature_routers_need_features():
    m = CorrectnessMatrix(np.zeros((2, 3), dtype=np.int8), ["a", "b"])
    with pytest.raises(RoutingDataError, match="needs question features"):
        KNNRouter().fit(m)
    with pytest.raises(RoutingDataError, match=r"features must be \(n_questions=3"):
        KNNRouter().fit(m, features=np.zeros((2, 4)))
