"""Detectors: training on a toy signal, save/load round trips (no pickle), refusal of a foreign model/template."""

import json

import numpy as np
import pytest

from lmlab.moderation import DETECTORS, DetectorError, load_detector
from lmlab.moderation.features import FirstTokenFeatures, PromptTemplate

BENIGN = ["what is the weather today", "tell me a story about a cat", "how do i cook rice", "name a prime number",
          "recommend a good book", "what time is it in paris", "explain how a bicycle works", "hello, how are you?"]
TOXIC = ["you stupid idiot", "i will hurt you", "kill them all now", "you are a stupid fool",
         "hurt and kill them", "idiot fool stupid", "i hate you idiot", "kill kill kill"]


@pytest.fixture(scope="module")
def lm():
    from lmlab.lm.testing import tiny_hf_lm

    return tiny_hf_lm(seed=0, batch_size=8)


@pytest.fixture()
def feats(lm, tmp_path):
    return FirstTokenFeatures(lm, PromptTemplate(), cache_dir=tmp_path / "cache")


def data():
    return BENIGN + TOXIC, np.r_[np.zeros(len(BENIGN)), np.ones(len(TOXIC))].astype(int)


def test_registry_names():
    assert set(DETECTORS.names()) == {"muli", "refusal-token", "tfidf-lr", "embed-lr"}


@pytest.mark.slow
def test_muli_fits_and_round_trips(feats, lm, tmp_path):
    from lmlab.moderation.muli import MULIDetector

    texts, y = data()
    det = MULIDetector(feats, lam=1e-2).fit(texts, y)
    p = det.score(texts)
    assert p.shape == (16,) and ((0 <= p) & (p <= 1)).all()
    assert det.fit_info["n_nonzero"] == len(det.idx) > 0 and det.fit_info["pos_weight"] == 1.0
    assert p[y == 1].mean() > p[y == 0].mean()  # the training data is separable through 48 log-odds
    path = det.save(tmp_path / "muli.npz")
    with np.load(path, allow_pickle=False) as z:  # plain arrays only
        assert json.loads(str(z["meta"]))["kind"] == "muli"
    back = load_detector(path, lm=lm, cache_dir=tmp_path / "cache")
    np.testing.assert_allclose(back.score(texts), p, rtol=1e-10)
    assert back.top_tokens(3)[0]["token"] == det.top_tokens(3)[0]["token"]


def test_muli_normalisation_is_the_papers(feats):
    from lmlab.moderation.features import log_odds
    from lmlab.moderation.muli import MIN_STD, MULIDetector

    texts, y = data()
    logits = feats.logits(texts)
    det = MULIDetector(feats, lam=1e-2).fit_logits(logits, y)
    f = log_odds(logits).astype(np.float64)
    np.testing.assert_allclose(det.mean, f.mean(0)[det.idx])
    np.testing.assert_allclose(det.std, f.std(0, ddof=1)[det.idx] + MIN_STD)
    z = (f[:, det.idx] - det.mean) / det.std
    np.testing.assert_allclose(det.decision_logits(logits), z @ det.w + det.b)


def test_class_weight_is_neg_over_pos(feats):
    from lmlab.moderation.muli import MULIDetector

    texts, y = data()
    sub = list(range(8)) + [8, 9]  # 8 benign, 2 toxic
    det = MULIDetector(feats, lam=1e-2).fit([texts[i] for i in sub], y[sub])
    assert det.fit_info["pos_weight"] == 4.0


def test_refuses_other_model_and_template(feats, tmp_path):
    from lmlab.lm.testing import tiny_hf_lm
    from lmlab.moderation.muli import MULIDetector
    from lmlab.moderation.refusal_token import RefusalTokenDetector

    texts, y = data()
    path = MULIDetector(feats, lam=1e-2).fit(texts, y).save(tmp_path / "m.npz")
    with pytest.raises(DetectorError, match=r"trained on model .*\(fingerprint"):
        MULIDetector.load(path, FirstTokenFeatures(tiny_hf_lm(seed=3), PromptTemplate(), cache_dir=None))
    with pytest.raises(DetectorError, match="prompt template"):
        MULIDetector.load(path, FirstTokenFeatures(feats.lm, PromptTemplate(suffix=" "), cache_dir=None))
    with pytest.raises(DetectorError, match="holds a 'muli' detector"):
        RefusalTokenDetector.load(path, feats)


@pytest.mark.slow
def test_refusal_token_detector(feats, lm, tmp_path):
    from lmlab.moderation.refusal_token import RefusalTokenDetector

    texts, _ = data()
    det = RefusalTokenDetector(feats, ["s"])
    sid = lm.tokenizer("s", add_special_tokens=False)["input_ids"][0]
    logits = feats.logits(texts)
    np.testing.assert_allclose(det.decision_function(texts), logits[:, sid])
    prob = np.exp(logits[:, sid]) / np.exp(logits).sum(1)
    np.testing.assert_allclose(det.score(texts), prob, rtol=1e-6)
    back = load_detector(det.save(tmp_path / "r.npz"), lm=lm, cache_dir=None)
    np.testing.assert_allclose(back.score(texts), det.score(texts))
    assert back.tokens == ("s",)


def test_tfidf_round_trip(tmp_path):
    from lmlab.moderation.tfidf import TfidfDetector

    texts, y = data()
    det = TfidfDetector(Cs=(1.0, 10.0)).fit(texts * 2, np.r_[y, y])
    p = det.score(texts)
    assert p[y == 1].mean() > p[y == 0].mean()
    back = load_detector(det.save(tmp_path / "t.npz"))
    np.testing.assert_allclose(back.score(texts + ["unseen words only"]), det.score(texts + ["unseen words only"]))


def test_embedding_detector_round_trip(tmp_path):
    from lmlab.moderation.embed_lr import EmbeddingDetector

    class FakeEmbedder:  # a deterministic stand-in for MiniLM (tests never load real weights)
        name = "fake"

        def encode(self, texts):
            return np.array([[t.count("i"), t.count("k"), len(t) / 10, 1.0] for t in texts], dtype=np.float32)

    texts, y = data()
    det = EmbeddingDetector(FakeEmbedder(), Cs=(1.0,)).fit(texts, y)
    back = EmbeddingDetector.load(det.save(tmp_path / "e.npz"), embedder=FakeEmbedder())
    np.testing.assert_allclose(back.score(texts), det.score(texts))


def test_bad_files(tmp_path):
    (tmp_path / "x.npz").write_bytes(b"not a zip")
    with pytest.raises(DetectorError, match="not a detector file"):
        load_detector(tmp_path / "x.npz")
    np.savez(tmp_path / "y.npz", w=np.zeros(3))
    with pytest.raises(DetectorError, match="no 'meta'"):
        load_detector(tmp_path / "y.npz")
    with pytest.raises(DetectorError, match="does not exist"):
        load_detector(tmp_path / "z.npz")


def test_sgd_matches_a_torch_implementation_of_the_papers_loop():
    import torch
    import torch.nn.functional as F

    from lmlab.moderation.muli import MULIDetector

    rng = np.random.default_rng(0)
    z = rng.normal(size=(40, 12))
    y = (rng.random(40) < 0.3).astype(int)
    det = MULIDetector(lam=1e-2, lr=0.05, epochs=30, batch_size=16)
    w, b, _ = det._fit_sgd(z, y, (1 - y).sum() / y.sum())
    r = np.random.default_rng(0)  # the same init, then the paper's torch loop
    bound = 1 / np.sqrt(12)
    tw = torch.tensor(r.uniform(-bound, bound, 12), dtype=torch.float32, requires_grad=True)
    tb = torch.tensor([r.uniform(-bound, bound)], dtype=torch.float32, requires_grad=True)
    opt = torch.optim.SGD([tw, tb], lr=0.05)
    X, Y = torch.tensor(z, dtype=torch.float32), torch.tensor(y, dtype=torch.float32)
    pw = torch.tensor((1 - y).sum() / y.sum(), dtype=torch.float32)
    for _ in range(30):
        for i in range(0, 40, 16):
            opt.zero_grad()
            loss = F.binary_cross_entropy_with_logits(X[i:i + 16] @ tw + tb, Y[i:i + 16], pos_weight=pw)
            (loss + 1e-2 * (tw.abs().sum() + tb.abs().sum())).backward()
            opt.step()
    np.testing.assert_allclose(w, tw.detach().numpy(), rtol=1e-4, atol=1e-5)
    assert b == pytest.approx(float(tb.detach()), abs=1e-5)


def test_tokens_constant_in_training_are_masked_at_test_time():
    """A token whose log-odds never moved in training has no weight, so a test prompt where it moves does not
    score around 1e10 (the paper's code masks such tokens at test time too)."""
    from lmlab.moderation.muli import MULIDetector

    rng = np.random.default_rng(0)
    logits = rng.normal(size=(40, 6))
    logits[:, 5] = -1000.0  # p underflows below the 1e-16 floor: log-odds constant in training
    y = (logits[:, 0] > 0).astype(int)
    det = MULIDetector(None, lam=1e-3, solver="sgd").fit_logits(logits, y)
    assert 5 not in det.idx and det.fit_info["n_constant_tokens"] >= 1
    test = logits[:2].copy()
    test[:, 5] = 5.0
    assert np.all(np.abs(det.decision_logits(test)) < 1e3)
