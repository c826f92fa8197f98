"""The Redis entry store: two nodes (two caches, each with its own FAISS index) sharing one redis-server."""

from __future__ import annotations

import uuid

import pytest
from redis_helper import redis_server

from lmlab.cache import CacheError, HashingEmbedder, Namespace, RedisSemanticCache, SemanticCache, open_cache

NS = Namespace(model="m", params={"temperature": 0.0}, system_prompt="", tenant="acme")
OTHER = Namespace(model="m", params={"temperature": 0.0}, system_prompt="", tenant="globex")


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory):
    with redis_server(tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture
def nodes(redis_url):
    prefix = f"t-{uuid.uuid4().hex[:8]}"  # each test its own key space on the shared server
    a = open_cache(HashingEmbedder(64), redis_url, threshold=0.5, prefix=prefix)
    b = open_cache(HashingEmbedder(64), redis_url, threshold=0.5, prefix=prefix)
    yield a, b
    a.close()
    b.close()


def test_open_cache_picks_the_store(redis_url, tmp_path):
    with open_cache(HashingEmbedder(64), tmp_path) as c:
        assert isinstance(c, SemanticCache)
    with open_cache(HashingEmbedder(64), redis_url, prefix="t-pick") as c:
        assert isinstance(c, RedisSemanticCache)
    with pytest.raises(CacheError, match="cannot use Redis"):
        open_cache(HashingEmbedder(64), "redis://127.0.0.1:1/0")


def test_put_on_one_node_is_a_hit_on_the_other(nodes):
    a, b = nodes
    assert b.get("Which city is the capital of Peru?", NS) is None  # b's index exists (empty) before the put
    a.put("What is the capital of Peru?", "Lima.", NS)
    h = b.get("What is the capital of Peru?", NS)
    assert h.exact and h.response == "Lima."
    h = b.get("Which city is the capital of Peru?", NS)  # semantic: b's index caught up from Redis
    assert h is not None and not h.exact and h.response == "Lima."
    b.put("When was Anna Adler born?", "1901.", NS)
    h = a.get("When was Anna Adler born, please?", NS)
    assert h is not None and h.response == "1901."
    a.put("What is the capital of Peru?", "Lima, Peru.", NS)  # an update keeps the entry, both nodes see it
    assert b.get("What is the capital of Peru?", NS).response == "Lima, Peru."
    assert a.index_ids(NS) == b.index_ids(NS) == a.entry_ids(NS) and len(a) == 2


def test_tenants_never_cross(nodes):
    a, b = nodes
    a.put("What is the capital of Peru?", "Lima.", NS)
    assert b.get("What is the capital of Peru?", OTHER) is None
    assert b.get("Which city is the capital of Peru?", OTHER) is None
    b.put("Which city is the capital of Peru?", "globex answer", OTHER)
    assert a.get("Which city is the capital of Peru?", NS).response == "Lima."  # not the other tenant's entry
    assert b.get("What is the capital of Peru?", OTHER).response == "globex answer"
    assert a.nearest("What is the capital of Peru?", OTHER).response == "globex answer"
    assert a.entry_ids(NS).isdisjoint(a.entry_ids(OTHER))
    assert a.purge(OTHER) == 1 and b.get("Which city is the capital of Peru?", OTHER) is None
    assert a.get("What is the capital of Peru?", NS).response == "Lima."


def test_lru_ttl_and_embedder_check(redis_url):
    prefix = f"t-{uuid.uuid4().hex[:8]}"
    t = [1000.0]
    with open_cache(HashingEmbedder(64), redis_url, threshold=1.0, prefix=prefix, max_entries=3, ttl_s=50,
                    clock=lambda: t[0]) as a, \
            open_cache(HashingEmbedder(64), redis_url, threshold=0.99, prefix=prefix, clock=lambda: t[0]) as b:
        for i in range(3):
            t[0] += 1
            a.put(f"question {i}?", f"answer {i}", NS)
        t[0] += 1
        assert a.get("question 0?", NS) is not None  # 0 is now the most recently used
        a.flush()
        a.put("question 3?", "answer 3", NS)  # evicts 1, the least recently used
        assert len(a) == 3 and b.get("question 1?", NS) is None
        assert b.get("question 0?", NS).response == "answer 0"
        assert b.index_ids(NS) == b.entry_ids(NS)
        t[0] += 100  # past a's TTL (a per-node setting, as with SQLite): a never serves them, b (no TTL) does
        assert b.get("question 3?", NS).response == "answer 3"
        assert a.get("question 3?", NS) is None  # and a deletes an expired entry it meets, for every node
        assert b.get("question 3?", NS) is None
        assert a.purge_expired() == 2 and len(b) == 0
    with pytest.raises(CacheError, match="was built with"):
        open_cache(HashingEmbedder(32), redis_url, prefix=prefix)


def test_concurrent_puts_from_two_nodes_get_distinct_ids(nodes):
    a, b = nodes
    ids = []
    for i in range(20):
        ids.append(a.put(f"alpha {i} river?", f"a{i}", NS))
        ids.append(b.put(f"beta {i} mountain?", f"b{i}", NS))
    assert len(set(ids)) == 40 and ids == sorted(ids)
    for i in range(20):
        assert a.get(f"beta {i} mountain?", NS).response == f"b{i}"
        assert b.get(f"alpha {i} river?", NS).response == f"a{i}"
    assert a.index_ids(NS) == b.index_ids(NS) == set(ids)
    assert a._indexes[NS.key].index.ntotal == 40  # nothing added twice


def test_wiped_redis_rebuilds_the_node_index(redis_url):
    import redis

    prefix = f"t-{uuid.uuid4().hex[:8]}"
    with open_cache(HashingEmbedder(64), redis_url, threshold=0.5, prefix=prefix) as a:
        for i in range(3):
            a.put(f"old question {i} about lakes?", f"old {i}", NS)
        assert a.get("old question 2 about lakes, please?", NS).response == "old 2"
        r = redis.Redis.from_url(redis_url)
        r.delete(*r.keys(f"{prefix}:*"))  # the store is wiped; ids start again at 1
        with open_cache(HashingEmbedder(64), redis_url, threshold=0.5, prefix=prefix) as b:
            b.put("new question about rivers?", "new", NS)
        h = a.get("new question about rivers, please?", NS)
        assert h is not None and h.response == "new"
        assert a.index_ids(NS) == a.entry_ids(NS) == {1}
