"""SemanticCache: thresholds, namespaces, TTL/LRU, index rebuild, durability under SIGKILL, bad input."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from lmlab.cache import CacheError, HashingEmbedder, Namespace, SemanticCache
from lmlab.cache import data as D
from lmlab.cache.simulate import simulate

NS = Namespace(model="m", params={"temperature": 0.0}, system_prompt="", tenant="t")
PROMPTS = ["What is the capital of Peru?", "Which city is the capital of Peru?", "What is the capital of Chile?",
           "When was Anna Adler born?", "Where was Anna Adler born?", "Is Lima not the capital of Peru?"]


def emb() -> HashingEmbedder:
    return HashingEmbedder(64)


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_exact_and_semantic_hits(tmp_path):
    with SemanticCache(emb(), tmp_path, threshold=0.5) as c:
        c.put(PROMPTS[0], "Lima.", NS)
        h = c.get(PROMPTS[0], NS)
        assert h.exact and h.similarity == 1.0 and h.response == "Lima."
        h = c.get(PROMPTS[1], NS)
        assert h is not None and not h.exact and 0.5 <= h.similarity < 1.0


def test_threshold_one_hits_only_exact_duplicates(tmp_path):
    with SemanticCache(emb(), tmp_path, threshold=1.0) as c:
        for p in PROMPTS:
            c.put(p, "a " + p, NS)
        for p in PROMPTS:
            assert c.get(p, NS).exact
        for p in ["what is the capital of peru?", "What is the capital of Peru ?", PROMPTS[0] + " "]:
            assert c.get(p, NS) is None


def test_threshold_monotone(tmp_path):
    with SemanticCache(emb(), tmp_path, threshold=0.0) as c:
        for p in PROMPTS[::2]:
            c.put(p, "x", NS)
    queries = PROMPTS[1::2] + ["How many people lived in Peru in 2001?", "capital of Peru?"]
    hits = []
    for tau in (1.0, 0.9, 0.7, 0.5, 0.3, 0.1, -0.2):
        with SemanticCache(emb(), tmp_path, threshold=tau) as c:
            hits.append(sum(c.get(q, NS) is not None for q in queries))
    assert hits == sorted(hits) and hits[0] == 0 and hits[-1] == len(queries)


def test_namespace_isolation(tmp_path):
    other = [Namespace("m2", {"temperature": 0.0}, "", "t"), Namespace("m", {"temperature": 0.7}, "", "t"),
             Namespace("m", {"temperature": 0.0}, "be terse", "t"), Namespace("m", {"temperature": 0.0}, "", "u")]
    assert len({NS.key, *(o.key for o in other)}) == 5
    with SemanticCache(emb(), tmp_path, threshold=0.0) as c:
        c.put(PROMPTS[0], "Lima.", NS)
        for o in other:
            assert c.get(PROMPTS[0], o) is None  # not even the exact match crosses namespaces
        assert c.get(PROMPTS[0], "never-used") is None  # an unknown namespace is a miss
        c.put(PROMPTS[0], "Lima (tenant u).", other[3])
        assert c.get(PROMPTS[0], NS).response == "Lima."


def test_ttl(tmp_path):
    clock = Clock()
    with SemanticCache(emb(), tmp_path, threshold=0.5, ttl_s=10, clock=clock) as c:
        c.put(PROMPTS[0], "Lima.", NS)
        clock.t += 5
        assert c.get(PROMPTS[1], NS) is not None
        clock.t += 6
        assert c.get(PROMPTS[0], NS) is None and c.get(PROMPTS[1], NS) is None
        assert c.purge_expired() + c.counters["expired"] >= 1 and len(c) == 0


def test_lru_eviction(tmp_path):
    clock = Clock()
    with SemanticCache(emb(), tmp_path, threshold=1.0, max_entries=3, clock=clock) as c:
        for p in PROMPTS[:3]:
            clock.t += 1
            c.put(p, "x", NS)
        clock.t += 1
        assert c.get(PROMPTS[0], NS) is not None  # 0 is now the most recently used
        clock.t += 1
        c.put(PROMPTS[3], "y", NS)  # evicts 1, the least recently used
        assert len(c) == 3 and c.get(PROMPTS[1], NS) is None
        assert all(c.get(p, NS) is not None for p in (PROMPTS[0], PROMPTS[2], PROMPTS[3]))
        assert c.index_ids(NS) == c.entry_ids(NS)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "delete", "empty"])
def test_damaged_index_is_rebuilt(tmp_path, damage):
    with SemanticCache(emb(), tmp_path, threshold=0.5) as c:
        for p in PROMPTS:
            c.put(p, "r " + p, NS)
        ids = c.entry_ids(NS)
    (f,) = list((tmp_path / "index").glob("*.faiss"))
    blob = f.read_bytes()
    if damage == "truncate":
        f.write_bytes(blob[: len(blob) // 2])
    elif damage == "garbage":
        f.write_bytes(os.urandom(len(blob)))
    elif damage == "empty":
        f.write_bytes(b"")
    else:
        f.unlink()
    with SemanticCache(emb(), tmp_path, threshold=0.5) as c:
        assert c.get(PROMPTS[1] + " please", NS) is not None
        assert c.index_ids(NS) == ids == c.entry_ids(NS)
        assert c.counters["index_rebuilds"] == 1
    with SemanticCache(emb(), tmp_path, threshold=0.5) as c:  # the rebuilt file was written and is valid
        assert c.index_ids(NS) == ids and c.counters["index_rebuilds"] == 0


def test_stale_index_catches_up(tmp_path):
    c = SemanticCache(emb(), tmp_path, threshold=0.5, flush_every=2)
    for p in PROMPTS:
        c.put(p, "x", NS)
    c._db.close()  # a crash: no close(), the last puts are in SQLite but not in the index file
    with SemanticCache(emb(), tmp_path, threshold=0.5) as c2:
        assert c2.index_ids(NS) == c2.entry_ids(NS) and len(c2.entry_ids(NS)) == len(PROMPTS)


def test_hnsw_index(tmp_path):
    clock = Clock()
    with SemanticCache(emb(), tmp_path, threshold=0.99, index="hnsw", max_entries=4, clock=clock) as c:
        for p in PROMPTS:
            clock.t += 1
            c.put(p, "r " + p, NS)
        assert len(c) == 4 and c.index_ids(NS) == c.entry_ids(NS)
        assert c.get(PROMPTS[-1], NS).response == "r " + PROMPTS[-1]
    with SemanticCache(emb(), tmp_path, threshold=0.99, index="hnsw") as c:
        assert c.index_ids(NS) == c.entry_ids(NS)


def test_bad_inputs(tmp_path):
    with SemanticCache(emb(), tmp_path, threshold=0.5) as c:
        c.put(PROMPTS[0], "Lima.", NS)
        for bad, word in (("", "empty"), ("   \n", "empty"), (b"\xff\xfeabc", "UTF-8"), (None, "expected text"),
                          ("a\ud800b", "surrogate")):
            with pytest.raises(CacheError, match=word) as e:
                c.put(bad, "x", NS)
            assert str(e.value).startswith("prompt:") and "\n" not in str(e.value)
            with pytest.raises(CacheError):
                c.get(bad, NS)
        assert c.get("What is the capital of Peru?".encode(), NS).response == "Lima."  # UTF-8 bytes are fine
        big = "x" * (1 << 20)  # 1 MB: stored and served; only its first characters are embedded
        c.put(big, "big", NS)
        assert c.get(big, NS).exact and c.get(big, NS).response == "big"
        with pytest.raises(CacheError, match="over the limit"):
            c.put("y" * (9 << 20), "x", NS)
        with pytest.raises(CacheError, match="namespace"):
            c.purge("never-used")
        with pytest.raises(CacheError, match="namespace"):
            c.put("q", "a", "")
        n = len(c)
    for other in (HashingEmbedder(32), HashingEmbedder(64, seed=1)):
        with pytest.raises(CacheError, match="embedder: store .* was built with") as e:
            SemanticCache(other, tmp_path)
        assert "\n" not in str(e.value)
    with SemanticCache(emb(), tmp_path) as c:  # nothing was lost
        assert len(c) == n and c.get(PROMPTS[0], NS).response == "Lima."
    with pytest.raises(CacheError, match="threshold"):
        SemanticCache(emb(), tmp_path, threshold=1.5)


def test_export_import_purge(tmp_path):
    with SemanticCache(emb(), tmp_path / "a") as c:
        for p in PROMPTS:
            c.put(p, "r " + p, NS)
        c.put("hello", "world", "plain")
        rows = list(c.export())
        assert c.purge("plain") == 1 and "plain" not in c.namespaces()
    with SemanticCache(HashingEmbedder(32), tmp_path / "b", threshold=1.0) as c:
        assert c.import_rows(rows) == len(PROMPTS) + 1
        assert c.get(PROMPTS[2], NS).response == "r " + PROMPTS[2] and c.get("hello", "plain").response == "world"


def test_store_matches_simulation(tmp_path):
    """The store's policy (get; on a miss put) gives the same hits as the vectorised simulation."""
    kb = D.KnowledgeBase()
    stream = D.make_stream(kb, 120, {"fresh": 0.2, "repeat": 0.2, "paraphrase": 0.3, "near_miss": 0.3}, seed=3)
    texts, keys = [q.text for q in stream], [q.key for q in stream]
    tau = 0.8
    (row,) = simulate(emb().encode(texts), keys, [tau], texts)
    hits = correct = 0
    with SemanticCache(emb(), tmp_path, threshold=tau) as c:
        for q in stream:
            h = c.get(q.text, NS)
            if h is None:
                c.put(q.text, repr(q.key), NS)
            else:
                hits += 1
                correct += h.response == repr(q.key)
    assert (hits, correct) == (row["hits"], row["correct_hits"])


WRITER = textwrap.dedent("""
    import sys
    from lmlab.cache import HashingEmbedder, SemanticCache
    c = SemanticCache(HashingEmbedder(64), sys.argv[1], threshold=0.9, flush_every=5)
    i = 0
    while True:
        c.put(f"question number {i} about topic {i % 7}?", f"answer {i}", "ns")
        print(i, flush=True)
        i += 1
""")


@pytest.mark.slow
def test_sigkill_durability(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
    p = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)], stdout=subprocess.PIPE, text=True, env=env)
    done = []
    deadline = time.time() + 30
    while len(done) < 40 and time.time() < deadline:
        line = p.stdout.readline()
        if not line:
            break
        done.append(int(line))
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert len(done) >= 40, "the writer did not get going"
    with SemanticCache(HashingEmbedder(64), tmp_path, threshold=0.9) as c:
        for i in done:  # every put that returned is there
            h = c.get(f"question number {i} about topic {i % 7}?", "ns")
            assert h is not None and h.exact and h.response == f"answer {i}"
        assert c.index_ids("ns") == c.entry_ids("ns")
        assert c._db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert len(c) in (len(done), len(done) + 1)  # at most one put committed but not yet acknowledged
        vec = c._vectors(np.array(sorted(c.entry_ids("ns"))))
        assert np.allclose(np.linalg.norm(vec, axis=1), 1.0, atol=1e-5)


def test_put_many_batches(tmp_path):
    clock = Clock()
    items = [(f"question {i}?", f"answer {i}") for i in range(25)] + [("question 3?", "answer 3b")]
    with SemanticCache(emb(), tmp_path, threshold=1.0, max_entries=20, clock=clock) as c:
        ids = c.put_many(items, NS, batch_size=7)
        assert len(ids) == 26 and len(c) == 20
        assert c.index_ids(NS) == c.entry_ids(NS)
        assert c.get("question 24?", NS).response == "answer 24"
