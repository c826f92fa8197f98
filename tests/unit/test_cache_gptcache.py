"""GPTCache as a peer: it must never pip-install at run time, and with the same embedding it must make the
same decisions as our simulation (its FAISS store is exact search)."""

from __future__ import annotations

import importlib.util
import subprocess

import pytest

from lmlab.cache import CacheError, HashingEmbedder
from lmlab.cache import data as D
from lmlab.cache.simulate import simulate

pytest.importorskip("gptcache", reason="the peer is in the [cache] extra")


@pytest.fixture
def no_subprocess(monkeypatch):
    """Any subprocess (gptcache's installer shells out to `pip install`) fails the test."""
    def boom(*a, **k):
        raise AssertionError(f"a subprocess was started: {a[:1]}")

    for name in ("check_call", "call", "run", "Popen", "check_output"):
        monkeypatch.setattr(subprocess, name, boom)


def test_gptcache_never_installs(no_subprocess):
    from lmlab.cache.peers import PipInstallRefused, import_gptcache

    import_gptcache()
    import gptcache.utils as gu

    # a backend whose library is missing makes gptcache try `pip install`; ours refuses instead
    with pytest.raises(PipInstallRefused, match="pip install"):
        gu._check_library("lmlab_no_such_module_xyz", package="lmlab-no-such-package")
    gu.import_faiss()  # present (declared in the extra): no install attempt
    gu.import_sqlalchemy()


def test_missing_peer_deps_is_one_clear_error(no_subprocess, monkeypatch):
    from lmlab.cache import peers

    real = importlib.util.find_spec
    monkeypatch.setattr(peers.importlib.util, "find_spec", lambda n, *a: None if n == "sqlalchemy" else real(n, *a))
    with pytest.raises(CacheError, match=r"missing sqlalchemy; pip install -e '\.\[cache\]'"):
        peers.import_gptcache()


@pytest.mark.slow
def test_gptcache_pipeline_same_decisions(no_subprocess):
    from lmlab.cache.peers import gptcache_simulate, memo_encoder

    kb = D.KnowledgeBase()
    stream = D.make_stream(kb, 80, {"fresh": 0.2, "repeat": 0.2, "paraphrase": 0.3, "near_miss": 0.3}, seed=1)
    texts, keys = [q.text for q in stream], [q.key for q in stream]
    e = HashingEmbedder(64)
    taus = [0.6, 0.85, 1.0]
    ours = simulate(e.encode(texts), keys, taus, texts)
    theirs = gptcache_simulate(memo_encoder(e.encode, texts), 64, texts, keys, taus)
    assert [(r["hits"], r["correct_hits"]) for r in theirs] == [(r["hits"], r["correct_hits"]) for r in ours]
