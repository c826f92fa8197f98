"""Pieces of the gateway without a server: config, circuit breaker, token bucket, guard calibration, parsing."""

import numpy as np
import pytest

from lmlab.config import ConfigError
from lmlab.serve import GatewayConfig, hash_key
from lmlab.serve.backends import CircuitBreaker, pieces
from lmlab.serve.config import ServerConfig, reference
from lmlab.serve.guard import threshold_at_fpr

TOML = """
[server]
port = 8123
state_dir = "{state}"

[[backends]]
name = "small"
kind = "fake"
reply = "hi"

[[backends]]
name = "big"
kind = "upstream"
url = "http://127.0.0.1:9/v1"
model = "m"

[guard]
enabled = false

[router]
fallback = ["big", "small"]

[[auth.keys]]
sha256 = "{digest}"
tenant = "acme"
rps = 2
"""


def test_toml_config_round_trip(tmp_path):
    p = tmp_path / "gateway.toml"
    p.write_text(TOML.format(state=tmp_path / "st", digest=hash_key("k")))
    cfg = GatewayConfig.load(p, ["cache.threshold=0.95"])
    assert cfg.server.port == 8123 and [b.name for b in cfg.backends] == ["small", "big"]
    assert cfg.backends[1].kind == "upstream" and cfg.auth.keys[0].tenant == "acme" and cfg.auth.keys[0].rps == 2
    assert cfg.cache.threshold == 0.95 and cfg.state_dir() == tmp_path / "st"
    assert GatewayConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize("text,match", [
    ('[[backends]]\nname = "a"\nkind = "fake"\n[[backends]]\nname = "a"\nkind = "fake"\n', "used twice"),
    ('[[backends]]\nname = "a"\nkind = "upstream"\nurl = "ftp://x"\n', "url"),
    ('[cache]\nthreshhold = 0.9\n', "did you mean 'threshold'"),
    ('[router]\nfallback = ["zzz"]\n', "router.fallback"),
    ('[[backends]]\nname = "auto"\nkind = "fake"\n', "router.alias"),
    ('[[auth.keys]]\nsha256 = "plain-key"\n', "64 hex digits"),
    ('[server\n', "not valid TOML"),
])
def test_config_errors_are_one_line(tmp_path, text, match):
    p = tmp_path / "g.toml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=match) as ei:
        GatewayConfig.load(p)
    assert "\n" not in str(ei.value)


def test_reference_lists_every_section():
    ref = reference()
    for sec in ("server", "[[backends]]", "guard", "cache", "router", "injection", "[[auth.keys]]", "limits", "logging"):
        assert f"| {sec} |" in ref
    assert "`breaker_failures`" in ref and "`target_fpr`" in ref


def test_hash_key():
    assert hash_key("test") == "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"


def test_circuit_breaker_states():
    now = [0.0]
    b = CircuitBreaker(failures=3, cooldown_s=10, clock=lambda: now[0])
    for _ in range(2):
        assert b.allow()
        b.failure()
    assert b.state == "closed"
    b.failure()
    assert b.state == "open" and not b.allow() and b.retry_after() == 10
    now[0] = 10.0
    assert b.allow() and b.state == "half_open"
    assert not b.allow()  # one trial at a time
    b.failure()
    assert b.state == "open" and not b.allow()
    now[0] = 25.0
    assert b.allow()
    b.success()
    assert b.state == "closed" and b.failures == 0 and b.allow()


def test_token_bucket():
    from lmlab.serve.ratelimit import LocalBuckets

    now = [100.0]
    tb = LocalBuckets(clock=lambda: now[0])
    assert [tb.take("k", 2.0, 3) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert tb.take("k", 2.0, 3) == pytest.approx(0.5)
    assert tb.take("other", 2.0, 3) == 0.0  # one bucket per key
    now[0] += 0.5
    assert tb.take("k", 2.0, 3) == 0.0


def test_sqlite_buckets_are_shared_by_handles(tmp_path):
    from lmlab.serve.ratelimit import SQLiteBuckets

    now = [1000.0]
    a, b = (SQLiteBuckets(tmp_path / "rl.sqlite", clock=lambda: now[0]) for _ in range(2))
    assert [h.take("k", 2.0, 3) for h in (a, b, a)] == [0.0, 0.0, 0.0]  # one bucket of 3, whichever handle takes
    assert b.take("k", 2.0, 3) == pytest.approx(0.5)
    assert a.take("k2", 2.0, 3) == 0.0
    now[0] += 0.5
    assert b.take("k", 2.0, 3) == 0.0 and a.take("k", 2.0, 3) > 0
    now[0] -= 10  # a clock step back pauses refilling, it does not empty or fill the bucket
    assert a.take("k", 2.0, 3) > 0
    a.close(), b.close()


def _take_many(path: str, n: int, q) -> None:
    from lmlab.serve.ratelimit import SQLiteBuckets

    h = SQLiteBuckets(path)
    q.put(sum(h.take("k", 0.001, 10) == 0.0 for _ in range(n)))
    h.close()


def test_sqlite_buckets_hold_across_processes(tmp_path):
    """Four processes take 25 tokens each from one bucket of 10 (refilling once in 1000 s): 10 in all."""
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    q = ctx.Queue()
    procs = [ctx.Process(target=_take_many, args=(str(tmp_path / "rl.sqlite"), 25, q)) for _ in range(4)]
    for p in procs:
        p.start()
    got = [q.get(timeout=30) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    assert sum(got) == 10, got


def test_redis_buckets_are_shared(tmp_path):
    from redis_helper import redis_server

    from lmlab.serve.ratelimit import RedisBuckets

    with redis_server(tmp_path) as url:
        a, b = RedisBuckets(url), RedisBuckets(url)
        assert [h.take("k", 1.0, 3) for h in (a, b, a)] == [0.0, 0.0, 0.0]
        assert 0 < b.take("k", 1.0, 3) <= 1.0
        assert b.take("k2", 1.0, 3) == 0.0
        a.close(), b.close()


def test_open_buckets_follows_the_deployment(tmp_path):
    from lmlab.serve.ratelimit import LocalBuckets, RedisBuckets, SQLiteBuckets, open_buckets

    base = GatewayConfig(server=ServerConfig(state_dir=str(tmp_path)))
    assert isinstance(open_buckets(base), LocalBuckets)
    two = open_buckets(base.replace(server=base.server.replace(workers=2)))
    assert isinstance(two, SQLiteBuckets) and two.path == tmp_path / "ratelimit.sqlite"
    two.close()
    assert isinstance(open_buckets(base.replace(cache=base.cache.replace(store="redis://127.0.0.1:1/0"))), RedisBuckets)


def test_threshold_at_fpr():
    benign = np.linspace(0, 1, 101)
    t = threshold_at_fpr(benign, 0.05)
    assert np.mean(benign >= t) <= 0.05 and np.mean(benign >= np.nextafter(benign[-6], -1)) > 0.05
    assert np.mean(benign >= threshold_at_fpr(benign, 0.001)) == 0


def test_pieces_join_back():
    for text in ("", "one", "a fairly long answer with several words in it, and punctuation.", "trailing "):
        assert "".join(pieces(text, 8)) == text


def test_parse_chat_rejects_bad_fields():
    from lmlab.serve.app import parse_chat
    from lmlab.serve.config import LimitsConfig
    from lmlab.serve.errors import GatewayError

    lim = LimitsConfig(max_tokens=100)
    ok, stream, opts = parse_chat({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 5, "stop": "x",
                                   "lmlab": {"cache": True}}, lim)
    assert ok.max_tokens == 5 and ok.stop == ["x"] and not stream and opts == {"cache": True}
    for bad in ({"messages": []}, {"messages": [{"role": "wizard", "content": "x"}]},
                {"messages": [{"role": "user", "content": 3}]},
                {"messages": [{"role": "user", "content": "x"}], "n": 2},
                {"messages": [{"role": "user", "content": "x"}], "top_p": "high"},
                {"messages": [{"role": "user", "content": "x"}], "max_tokens": 101},
                {"messages": [{"role": "user", "content": "x"}], "stream": "yes"}):
        with pytest.raises(GatewayError) as ei:
            parse_chat(bad, lim)
        assert ei.value.status == 400


@pytest.mark.slow
def test_default_guard_builds_calibrates_and_reloads(tmp_path, monkeypatch, one_thread):
    """The default MULI guard on a tiny random model and 50 bundled prompts: fitted, calibrated to the target FPR
    on its held-out split, saved, and loaded (not rebuilt) the second time."""
    from lmlab.lm.testing import tiny_hf_lm
    from lmlab.serve.config import GuardConfig
    from lmlab.serve.guard import build_guard, default_detector

    monkeypatch.setenv("LMLAB_CACHE", str(tmp_path / "cache"))
    lm = tiny_hf_lm()
    cfg = GuardConfig(target_fpr=0.1)
    det, meta = default_detector(cfg, lm, tmp_path / "state", max_prompts=50)
    assert meta["calib_fpr"] <= 0.1 and meta["n_calib"] == 15
    assert (tmp_path / "state" / "guard").exists()
    det2, meta2 = default_detector(cfg, lm, tmp_path / "state", max_prompts=50)
    assert meta["source"] == "built" and meta2["source"] == "state_dir"  # loaded, not rebuilt
    assert {**meta2, "source": ""} == {**meta, "source": ""} and np.allclose(det2.score(["hello"]), det.score(["hello"]))
    g = build_guard(GuardConfig(enabled=False), lm, tmp_path)
    assert g is None


def test_shared_store_serves_another_handles_semantic_entry(tmp_path):
    """Two gateway workers = two handles on one store: an entry committed by one is found by the other's next
    semantic lookup (not only by the exact-match path), without reopening."""
    from lmlab.cache import HashingEmbedder, Namespace, SemanticCache

    ns = Namespace(model="m", tenant="t")
    a = SemanticCache(HashingEmbedder(256), tmp_path, threshold=0.5, shared=True)
    b = SemanticCache(HashingEmbedder(256), tmp_path, threshold=0.5, shared=True)
    a.put("what is the capital of peru", "Lima.", ns)
    assert b.get("what is the capital of peru?", ns) is not None  # b loads the index after a's put
    b.put("how tall is mount everest", "8849 m", ns)
    hit = a.get("how tall is mount everest?", ns)  # a's index was loaded before b's put
    assert hit is not None and hit.response == "8849 m" and not hit.exact
    a.close()
    b.close()


@pytest.mark.slow
def test_embedllm_router_over_backends(tmp_path):
    """A correctness matrix whose models are backend names: arithmetic goes to 'calc', geography to 'atlas'."""
    from lmlab.cache import HashingEmbedder
    from lmlab.routing.data import CorrectnessMatrix, save_matrix
    from lmlab.serve.config import RouterConfig
    from lmlab.serve.router import Router

    rng = np.random.default_rng(0)
    cities = ["peru", "chile", "france", "spain", "japan", "kenya", "egypt", "india", "italy", "china"]
    qs, lab = [], []
    for i in range(40):
        a, b = rng.integers(2, 99, 2)
        qs.append(f"what is {a} plus {b}")
        lab.append((1, 0))
        qs.append(f"what is the capital of {cities[i % 10]}")
        lab.append((0, 1))
    m = CorrectnessMatrix(np.array(lab).T, ["calc", "atlas"], question_text=qs)
    path = save_matrix(m, tmp_path / "m.npz")
    cfg = RouterConfig(matrix=str(path), epochs=150, lr=1e-2, batch_size=32)
    r = Router(cfg, ["fallbackfirst", "calc", "atlas"], HashingEmbedder(256), tmp_path)
    assert r.by == "embedllm"
    assert r.plan("what is 12 plus 30")[0][0] == "calc"
    order, by = r.plan("what is the capital of italy")
    assert order[0] == "atlas" and by == "embedllm" and sorted(order) == ["atlas", "calc", "fallbackfirst"]
    assert list((tmp_path / "router").glob("embedllm-*.pt"))
    r2 = Router(cfg, ["fallbackfirst", "calc", "atlas"], HashingEmbedder(256), tmp_path)  # loads the saved fit
    assert r2.plan("what is 3 plus 4")[0][0] == "calc"
    assert Router(RouterConfig(), ["x", "y"]).plan("anything") == (["x", "y"], "fallback")


def test_split_for_model_host():
    from lmlab.serve.config import BackendConfig, GuardConfig, ServerConfig
    from lmlab.serve.run import split_for_model_host

    cfg = GatewayConfig(server=ServerConfig(workers=3, port=8000),
                        backends=(BackendConfig(name="smol", kind="local", max_pending=16),
                                  BackendConfig(name="f", kind="fake")),
                        guard=GuardConfig(detector="default"))
    host, workers = split_for_model_host(cfg, 9999, "secret")
    assert [b.name for b in host.backends] == ["smol"] and host.server.role == "model-host"
    assert host.server.host == "127.0.0.1" and host.server.workers == 1 and not host.cache.enabled
    assert host.auth.keys[0].digest == hash_key("secret") and host.guard.detector == "default"
    smol = workers.backend("smol")
    assert smol.kind == "upstream" and smol.url == "http://127.0.0.1:9999/v1" and smol.model == "smol"
    assert smol.api_key_env == "LMLAB_MODEL_HOST_KEY" and workers.backend("f").kind == "fake"
    assert workers.guard.detector == "http://127.0.0.1:9999"


def test_docs_config_reference_is_current():
    from pathlib import Path

    doc = (Path(__file__).parents[2] / "docs" / "serve.md").read_text()
    assert reference() in doc, "docs/serve.md: regenerate the config reference table (see the note above it)"


def test_route_fit_builds_a_matrix_the_router_reads(tmp_path):
    from lmlab.routing.data import load_matrix
    from lmlab.serve.config import BackendConfig
    from lmlab.serve.fit import fit_matrix, is_correct, verifiable_questions

    assert len(verifiable_questions()) == 180
    assert is_correct("The capital is Paris.", "Paris") and not is_correct("Parisian", "Paris")
    assert is_correct("new delhi", "New Delhi")
    cfg = GatewayConfig(backends=(BackendConfig(name="knows-paris", kind="fake", reply="Paris"),
                                  BackendConfig(name="echo", kind="fake")))
    summary = fit_matrix(cfg, tmp_path / "m.npz", limit=6)
    m = load_matrix(tmp_path / "m.npz")
    assert m.model_names == ["knows-paris", "echo"] and m.labels.shape == (2, 6)
    assert m.labels[0].tolist() == [1, 0, 0, 0, 0, 0]  # France's capital only
    assert summary["accuracy"]["knows-paris"] == round(1 / 6, 4) and len(m.question_text) == 6


def test_queue_on_token_hook_streams_the_same_tokens(one_thread):
    from lmlab.lm.testing import tiny_hf_lm

    lm = tiny_hf_lm()
    seen = []
    with lm.engine().queue(max_batch=2, max_len=64) as q:
        text = q.submit("hello", max_new_tokens=6, on_token=seen.append).result()
        bad = q.submit("hello", max_new_tokens=3, on_token=lambda t: 1 / 0).result()  # a failing listener is dropped
    assert lm.tokenizer.decode(seen, skip_special_tokens=True) == text and len(seen) <= 6
    assert bad == text[: len(bad)]


def test_packaged_guard_is_consistent():
    """The calibrated default guard shipped as package data: small, loadable without a model, its file key is
    what default_detector computes for its model and calibration, and its threshold, FPR and TPR follow from its
    stored calibration scores on the bundled set's held-out split."""
    import json

    from lmlab.moderation.data import DEFAULT_SHA256, load_default, split_fingerprint, stratified_split
    from lmlab.moderation.muli import MULIDetector
    from lmlab.serve.config import GuardConfig
    from lmlab.serve.guard import GUARD_VERSION, PACKAGED_GUARD_DIR, guard_key, read_detector_meta

    files = sorted(PACKAGED_GUARD_DIR.glob("muli-*.npz"))
    assert files, f"no packaged guard in {PACKAGED_GUARD_DIR}"
    labels = load_default().labels
    for f in files:
        info = json.loads(f.with_suffix(".json").read_text())
        assert f.stat().st_size < 2_000_000
        meta = read_detector_meta(f)
        det = MULIDetector.load(f)  # arrays and metadata only: no model needed
        assert det.w.shape == det.idx.shape == det.mean.shape == det.std.shape and np.isfinite(det.w).all()
        assert meta["model_fingerprint"] == info["model_fingerprint"] == info["lm_fingerprint"]
        assert meta["template_key"] == info["template_key"] and info["version"] == GUARD_VERSION
        cfg = GuardConfig(target_fpr=info["target_fpr"], calib_frac=info["calib_frac"], seed=info["seed"])
        assert f.stem == f"muli-{guard_key(cfg, info['model_fingerprint'], info['template_key'])}" == f"muli-{info['key']}"
        assert info["calibration_set"]["sha256"] == DEFAULT_SHA256
        train, calib = stratified_split(labels, cfg.calib_frac, cfg.seed)
        assert info["calibration_set"]["split_fingerprint"] == split_fingerprint(train, calib)
        assert info["calib_labels"] == labels[calib].tolist() and info["n_train"] == len(train)
        s, y = np.array(info["calib_scores"]), np.array(info["calib_labels"])
        thr = threshold_at_fpr(s[y == 0], cfg.target_fpr)
        assert thr == info["threshold"] == meta["threshold"]
        assert np.mean(s[y == 0] >= thr) == info["calib_fpr"] <= cfg.target_fpr
        assert np.mean(s[y == 1] >= thr) == info["calib_tpr"]


def test_upstream_transport_honours_proxy_environment(monkeypatch):
    """Upstream calls skip httpx's client, so the proxy variables it would read are read here."""
    from lmlab.serve.netio import CoalescingBackend, env_proxy, upstream_transport

    for v in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(v, raising=False)
    import httpx

    assert env_proxy("http://10.0.0.5:8000/v1/") is None
    t = upstream_transport("http://10.0.0.5:8000/v1/", httpx.Limits())
    assert isinstance(t._pool._network_backend, CoalescingBackend)  # one write per request
    monkeypatch.setenv("https_proxy", "http://proxy.example:3128")
    monkeypatch.setenv("no_proxy", "localhost,127.0.0.1")
    assert env_proxy("https://api.example.com/v1/") == "http://proxy.example:3128"
    assert env_proxy("http://api.example.com/v1/") is None and env_proxy("https://127.0.0.1:8080/v1/") is None


def test_local_backend_queue_does_not_reuse_prompts_across_requests(one_thread):
    """The gateway's queue keeps no prompt keys/values: a prompt another tenant sent would get its first token sooner."""
    import asyncio

    from lmlab.lm.testing import tiny_hf_lm
    from lmlab.serve.backends import LocalBackend
    from lmlab.serve.config import BackendConfig

    be = LocalBackend(BackendConfig(name="tiny", kind="local", model="tiny", max_batch=2, max_len=64), lm=tiny_hf_lm())

    async def go() -> dict:
        await be.start()
        try:
            for _ in range(2):
                await asyncio.wrap_future(be.queue.submit("the same prompt", max_new_tokens=2))
            return dict(be.queue.stats)
        finally:
            await be.close()

    stats = asyncio.run(go())
    assert stats["prefill_tokens_reused"] == 0 and stats["prompt_hits"] == 0 and stats["prefill_tokens"] > 0
