"""A semantic cache whose entries live in Redis, for several gateway nodes sharing one cache.

>>> from lmlab.cache import HashingEmbedder, open_cache
>>> c = open_cache(HashingEmbedder(64), "redis://127.0.0.1:6379/0", threshold=0.9)   # doctest: +SKIP

Same interface and policy as :class:`lmlab.cache.SemanticCache` (namespaces are hard walls, exact-match fast
path, threshold, TTL, LRU above ``max_entries``); only the entry store differs. Debian's redis-server 7.0 has
no vector search, so Redis holds the entries (prompt, response, vector, times) and each node keeps its own
FAISS index per namespace in memory, built from Redis when first used and caught up from Redis before every
semantic search (one round trip: the ids above the index's watermark, with their vectors).

Layout under ``prefix`` (default ``lmlab:cache``): ``meta`` (hash: schema, dim, embedder fingerprint), ``ns``
(hash: namespace -> spec), ``seq`` (entry id counter), ``e:<id>`` (hash: one entry), ``x:<ns>`` (hash: prompt
sha256 -> id, the exact-match path), ``ids:<ns>`` (sorted set of the namespace's ids, scored by id: what a
node syncs from) and ``lru`` (sorted set of all ids scored by last access). Every write is one Lua script, so
Redis applies it atomically, and ids come from ``INCR`` inside it: id order is commit order, which is what
lets a node catch up by asking for the ids above its watermark.

Durability: ``put`` returns once Redis executed the write. Whether an acknowledged write survives a Redis
crash is Redis's persistence setting: ``appendonly yes`` with ``appendfsync always`` makes it durable like the
SQLite store; ``everysec`` can lose the last second.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any, Literal

import numpy as np

from lmlab.cache.embedders import CacheEmbedder
from lmlab.cache.store import (DEFAULT_MAX_PROMPT_BYTES, NON_IDENTICAL_MAX, SCHEMA, CacheError, Hit,
                               NamespaceLike, _hash, _Index, _ns, _text, encode, import_rows)

log = logging.getLogger(__name__)

_PUT = """
local p, ns, spec, h, prompt, response, vec, now = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8]
local maxn = tonumber(ARGV[9])
redis.call('HSETNX', p .. ':ns', ns, spec)
local old = redis.call('HGET', p .. ':x:' .. ns, h)
if old then
  redis.call('HSET', p .. ':e:' .. old, 'response', response, 'created', now, 'accessed', now)
  redis.call('ZADD', p .. ':lru', now, old)
  return {tonumber(old), 0, {}}
end
local id = redis.call('INCR', p .. ':seq')
redis.call('HSET', p .. ':e:' .. id, 'ns', ns, 'prompt', prompt, 'h', h, 'response', response, 'vec', vec,
           'created', now, 'accessed', now, 'hits', 0)
redis.call('HSET', p .. ':x:' .. ns, h, id)
redis.call('ZADD', p .. ':ids:' .. ns, id, id)
redis.call('ZADD', p .. ':lru', now, id)
local evicted = {}
if maxn > 0 then
  local over = redis.call('ZCARD', p .. ':lru') - maxn
  if over > 0 then
    for _, v in ipairs(redis.call('ZRANGE', p .. ':lru', 0, over)) do
      if #evicted < 2 * over and tonumber(v) ~= id then
        local e = redis.call('HMGET', p .. ':e:' .. v, 'ns', 'h')
        redis.call('DEL', p .. ':e:' .. v)
        redis.call('ZREM', p .. ':lru', v)
        if e[1] then
          redis.call('HDEL', p .. ':x:' .. e[1], e[2])
          redis.call('ZREM', p .. ':ids:' .. e[1], v)
        end
        table.insert(evicted, v)
        table.insert(evicted, e[1] or '')
      end
    end
  end
end
return {id, 1, evicted}
"""

_DELETE = """
local p = ARGV[1]
local n = 0
for i = 2, #ARGV do
  local v = ARGV[i]
  local e = redis.call('HMGET', p .. ':e:' .. v, 'ns', 'h')
  if e[1] then
    redis.call('DEL', p .. ':e:' .. v)
    redis.call('HDEL', p .. ':x:' .. e[1], e[2])
    redis.call('ZREM', p .. ':ids:' .. e[1], v)
    n = n + 1
  end
  redis.call('ZREM', p .. ':lru', v)
end
return n
"""

_PURGE = """
local p, ns = ARGV[1], ARGV[2]
if redis.call('HEXISTS', p .. ':ns', ns) == 0 then return -1 end
local ids = redis.call('ZRANGE', p .. ':ids:' .. ns, 0, -1)
for _, v in ipairs(ids) do
  redis.call('DEL', p .. ':e:' .. v)
  redis.call('ZREM', p .. ':lru', v)
end
redis.call('DEL', p .. ':x:' .. ns, p .. ':ids:' .. ns)
redis.call('HDEL', p .. ':ns', ns)
return #ids
"""

# the exact-match lookup in one round trip: {id, response, created} or {} (ns not known: {-1})
_EXACT = """
local p, ns, h = ARGV[1], ARGV[2], ARGV[3]
local id = redis.call('HGET', p .. ':x:' .. ns, h)
if not id then
  if redis.call('HEXISTS', p .. ':ns', ns) == 0 then return {-1} end
  return {}
end
local e = redis.call('HMGET', p .. ':e:' .. id, 'response', 'created')
if not e[1] then return {} end
return {tonumber(id), e[1], e[2]}
"""

# a node's catch-up: the id counter, then the ids above its watermark with their vectors,
# {seq, id1, vec1, id2, vec2, ...}
_SINCE = """
local p, ns, after, limit = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local ids = redis.call('ZRANGEBYSCORE', p .. ':ids:' .. ns, '(' .. after, '+inf', 'LIMIT', 0, limit)
local out = {tonumber(redis.call('GET', p .. ':seq') or '0')}
for _, v in ipairs(ids) do
  local vec = redis.call('HGET', p .. ':e:' .. v, 'vec')
  if vec then table.insert(out, tonumber(v)); table.insert(out, vec) end
end
return out
"""

SYNC_BATCH = 20_000  # ids per catch-up round trip


class RedisSemanticCache:
    """:class:`lmlab.cache.SemanticCache` over a Redis entry store (``store`` is a ``redis://`` URL). A Redis
    store is always shared (``shared`` is accepted for the same signature)."""

    def __init__(self, embedder: CacheEmbedder, store: str, threshold: float = 0.9, *,
                 ttl_s: float | None = None, max_entries: int | None = None,
                 index: Literal["flat", "hnsw"] = "flat", hnsw_m: int = 32, ef_search: int = 64,
                 ef_construction: int = 80, flush_every: int = 1000,
                 max_prompt_bytes: int = DEFAULT_MAX_PROMPT_BYTES, clock: Any = time.time,
                 prefix: str = "lmlab:cache", client: Any = None, shared: bool = True):
        if not -1.0 <= float(threshold) <= 1.0:
            raise CacheError(f"threshold: {threshold} is not a cosine similarity in [-1, 1]")
        if ttl_s is not None and ttl_s <= 0:
            raise CacheError(f"ttl_s: {ttl_s} must be > 0 (or None for no expiry)")
        if max_entries is not None and max_entries < 1:
            raise CacheError(f"max_entries: {max_entries} must be >= 1 (or None for no limit)")
        if index not in ("flat", "hnsw"):
            raise CacheError(f"index: {index!r}; choose 'flat' (exact) or 'hnsw' (approximate)")
        if not prefix or not prefix.isprintable():
            raise CacheError(f"prefix: {prefix!r}; pass a printable Redis key prefix such as 'lmlab:cache'")
        self.embedder, self.threshold = embedder, float(threshold)
        self.ttl_s, self.max_entries, self.kind = ttl_s, max_entries, index
        self.params = (hnsw_m, ef_search, ef_construction)
        self.max_prompt_bytes, self.clock, self.prefix = max_prompt_bytes, clock, prefix
        self.url = str(store)
        if client is None:
            import redis

            try:
                client = redis.Redis.from_url(self.url, socket_timeout=10, socket_connect_timeout=5)
                client.ping()
            except (redis.RedisError, ValueError) as e:
                raise CacheError(f"store: cannot use Redis at {self.url} ({e}); start redis-server or fix the URL "
                                 "(redis://HOST:PORT/DB)") from None
        self.r = client
        self._put, self._delete_s, self._purge_s = (client.register_script(s) for s in (_PUT, _DELETE, _PURGE))
        self._exact, self._since = client.register_script(_EXACT), client.register_script(_SINCE)
        self._lock = threading.RLock()
        self._indexes: dict[str, _Index] = {}
        self._touched: dict[int, float] = {}
        self.counters = {"gets": 0, "exact_hits": 0, "semantic_hits": 0, "misses": 0, "puts": 0, "evicted": 0,
                         "expired": 0, "index_rebuilds": 0, "index_catchups": 0}
        self._closed = False
        self._check_meta()

    def _k(self, *parts: Any) -> str:
        return ":".join([self.prefix, *map(str, parts)])

    def _check_meta(self) -> None:
        want = {"schema": str(SCHEMA), "dim": str(self.embedder.dim), "fingerprint": self.embedder.fingerprint,
                "embedder": self.embedder.name}
        pipe = self.r.pipeline(transaction=True)
        for k, v in want.items():
            pipe.hsetnx(self._k("meta"), k, v)
        pipe.hgetall(self._k("meta"))
        have = {k.decode(): v.decode() for k, v in pipe.execute()[-1].items()}
        if have.get("schema") != want["schema"]:
            raise CacheError(f"store: {self.url} ({self.prefix}) has schema {have.get('schema')}, this lmlab reads "
                             f"{SCHEMA}; export it with the lmlab that wrote it and import it here")
        if have.get("dim") != want["dim"] or have.get("fingerprint") != want["fingerprint"]:
            raise CacheError(f"embedder: store {self.url} ({self.prefix}) was built with {have.get('embedder')} "
                             f"(dim {have.get('dim')}, fingerprint {have.get('fingerprint')}), not {want['embedder']} "
                             f"(dim {want['dim']}, fingerprint {want['fingerprint']}); open it with that embedder or "
                             "use another prefix")

    # -- the node's vector index ----------------------------------------------------------------------------
    def _index(self, ns: str) -> _Index:
        """The namespace's in-memory index, caught up with Redis (all ids above its watermark)."""
        idx = self._indexes.get(ns)
        if idx is None:
            idx = self._indexes[ns] = _Index(self.embedder.dim, self.kind, *self.params)
            self.counters["index_rebuilds"] += 1
        while True:
            seq, *flat = self._since(args=[self.prefix, ns, idx.synced, SYNC_BATCH])
            if int(seq) < idx.synced:  # the keys were wiped (FLUSHDB) and ids start again: rebuild
                log.warning("redis cache %s: id counter went back (%s < %s); rebuilding this node's index",
                            self.url, seq, idx.synced)
                idx = self._indexes[ns] = _Index(self.embedder.dim, self.kind, *self.params)
                self.counters["index_rebuilds"] += 1
                continue
            if not flat:
                return idx
            ids = np.array(flat[0::2], dtype=np.int64)
            idx.add(ids, np.stack([np.frombuffer(v, dtype=np.float32) for v in flat[1::2]]))
            idx.synced = int(ids.max())
            self.counters["index_catchups"] += 1
            if len(ids) < SYNC_BATCH:
                return idx

    # -- API -------------------------------------------------------------------------------------------------
    def get(self, prompt: Any, namespace: NamespaceLike) -> Hit | None:
        """The cached answer for ``prompt`` in ``namespace``, or None."""
        prompt = _text(prompt, "prompt", self.max_prompt_bytes)
        ns, _ = _ns(namespace)
        now = self.clock()
        res = self._exact(args=[self.prefix, ns, _hash(prompt).hex()])
        with self._lock:
            self.counters["gets"] += 1
        if len(res) == 3 and not self._expired(float(res[2]), now):
            with self._lock:
                self._touch(int(res[0]), now)
                self.counters["exact_hits"] += 1
            return Hit(res[1].decode(), 1.0, prompt, int(res[0]), True)
        if res == [-1]:  # a namespace nobody wrote to
            with self._lock:
                self.counters["misses"] += 1
            return None
        vec = self._embed([prompt])[0]
        hit = self._search(ns, vec, now, prompt)
        with self._lock:
            self.counters["semantic_hits" if hit else "misses"] += 1
        return hit

    def nearest(self, prompt: Any, namespace: NamespaceLike) -> Hit | None:
        prompt = _text(prompt, "prompt", self.max_prompt_bytes)
        ns, _ = _ns(namespace)
        vec = self._embed([prompt])[0]
        return self._search(ns, vec, self.clock(), prompt, threshold=-2.0, touch=False)

    def _search(self, ns: str, vec: np.ndarray, now: float, prompt: str, threshold: float | None = None,
                touch: bool = True) -> Hit | None:
        thr = self.threshold if threshold is None else threshold
        with self._lock:
            idx = self._index(ns)
            cands = idx.search(vec, k=4)
        if not cands:
            return None
        pipe = self.r.pipeline(transaction=False)
        for _, eid in cands:
            pipe.hmget(self._k("e", eid), "prompt", "response", "created")
        rows = pipe.execute()
        for (sim, eid), row in zip(cands, rows):
            if row[0] is None:  # deleted (evicted, expired, purged) by this or another node
                with self._lock:
                    idx.remove([eid])
                continue
            cached = row[0].decode()
            if cached != prompt:
                sim = min(sim, NON_IDENTICAL_MAX)
            if sim < thr:
                return None
            if self._expired(float(row[2]), now):
                self._delete([eid], "expired")
                continue
            if touch:
                with self._lock:
                    self._touch(eid, now)
            return Hit(row[1].decode(), min(sim, 1.0) if cached == prompt else sim, cached, eid, cached == prompt)
        return None

    def put(self, prompt: Any, response: Any, namespace: NamespaceLike) -> int:
        """Store ``response`` for ``prompt``; returns the entry id once Redis executed the write. The vector is
        added to every node's index (this one's included) when that node next searches the namespace."""
        prompt = _text(prompt, "prompt", self.max_prompt_bytes)
        response = _text(response, "response", self.max_prompt_bytes)
        ns, spec = _ns(namespace)
        vec = self._embed([prompt])[0]
        self._write_touched()
        eid, _new, evicted = self._put(args=[
            self.prefix, ns, json.dumps(spec, sort_keys=True, ensure_ascii=False), _hash(prompt).hex(), prompt,
            response, vec.astype(np.float32).tobytes(), repr(float(self.clock())), self.max_entries or 0])
        with self._lock:
            self.counters["puts"] += 1
            self.counters["evicted"] += len(evicted) // 2
            for eid, ens in zip(evicted[0::2], evicted[1::2]):
                idx = self._indexes.get(ens.decode())
                if idx is not None and int(eid) <= idx.synced:
                    idx.remove([int(eid)])
        return int(eid)

    def put_many(self, items: Iterable[tuple[Any, Any]], namespace: NamespaceLike, batch_size: int = 1000) -> list[int]:
        items = list(items)
        ids: list[int] = []
        for s in range(0, len(items), batch_size):
            chunk = [(_text(p, "prompt", self.max_prompt_bytes), _text(r, "response", self.max_prompt_bytes))
                     for p, r in items[s:s + batch_size]]
            uniq = list(dict.fromkeys(p for p, _ in chunk))
            self._embed_cache = dict(zip(uniq, self._embed(uniq)))
            try:
                ids.extend(self.put(p, r, namespace) for p, r in chunk)
            finally:
                self._embed_cache = None
        return ids

    _embed_cache: dict[str, np.ndarray] | None = None

    # -- maintenance -----------------------------------------------------------------------------------------
    def _expired(self, created: float, now: float) -> bool:
        return self.ttl_s is not None and now - created > self.ttl_s

    def _touch(self, eid: int, now: float) -> None:
        self._touched[eid] = now
        if len(self._touched) >= 256:
            self._write_touched()

    def _write_touched(self) -> None:
        with self._lock:
            touched, self._touched = self._touched, {}
        if touched:
            pipe = self.r.pipeline(transaction=False)
            for eid, t in touched.items():
                pipe.zadd(self._k("lru"), {str(eid): t}, xx=True, gt=True)
                pipe.hincrby(self._k("e", eid), "hits", 1)
            pipe.execute()

    def _delete(self, ids: list[int], why: str) -> None:
        pipe = self.r.pipeline(transaction=False)
        for i in ids:
            pipe.hget(self._k("e", i), "ns")
        owners = pipe.execute()
        n = self._delete_s(args=[self.prefix, *ids])
        with self._lock:
            self.counters[why] += int(n)
            for i, ens in zip(ids, owners):
                idx = self._indexes.get(ens.decode()) if ens is not None else None
                if idx is not None and i <= idx.synced:
                    idx.remove([i])

    def purge_expired(self) -> int:
        if self.ttl_s is None:
            return 0
        old = []
        for ns in self.namespaces():
            ids = sorted(self.entry_ids(ns))
            for s in range(0, len(ids), 1000):
                pipe = self.r.pipeline(transaction=False)
                for i in ids[s:s + 1000]:
                    pipe.hget(self._k("e", i), "created")
                for i, c in zip(ids[s:s + 1000], pipe.execute()):
                    if c is not None and self.clock() - float(c) > self.ttl_s:
                        old.append(i)
        for s in range(0, len(old), 1000):
            self._delete(old[s:s + 1000], "expired")
        return len(old)

    def purge(self, namespace: NamespaceLike) -> int:
        ns, _ = _ns(namespace)
        n = int(self._purge_s(args=[self.prefix, ns]))
        if n < 0:
            known = ", ".join(self.namespaces()) or "none"
            raise CacheError(f"namespace: {ns!r} is not in store {self.url} (known: {known})")
        with self._lock:
            self._indexes.pop(ns, None)
        return n

    def namespaces(self) -> dict[str, dict[str, Any]]:
        return {k.decode(): json.loads(v) for k, v in sorted(self.r.hgetall(self._k("ns")).items())}

    def __len__(self) -> int:
        return int(self.r.zcard(self._k("lru")))

    def stats(self) -> dict[str, Any]:
        specs = self.namespaces()
        return {"store": self.url, "prefix": self.prefix, "entries": len(self),
                "namespaces": {ns: {"entries": int(self.r.zcard(self._k("ids", ns))), "spec": spec}
                               for ns, spec in specs.items()},
                "embedder": self.embedder.name, "fingerprint": self.embedder.fingerprint, "dim": self.embedder.dim,
                "threshold": self.threshold, "index": self.kind, "ttl_s": self.ttl_s,
                "max_entries": self.max_entries, **self.counters}

    def index_ids(self, namespace: NamespaceLike) -> set[int]:
        """The live entry ids in this node's index for the namespace (after catching up with Redis)."""
        ns, _ = _ns(namespace)
        with self._lock:
            idx = self._index(ns)
            return set(int(i) for i in idx.ids()) - idx.dead

    def entry_ids(self, namespace: NamespaceLike) -> set[int]:
        ns, _ = _ns(namespace)
        return {int(i) for i in self.r.zrange(self._k("ids", ns), 0, -1)}

    def export(self) -> Iterator[dict[str, Any]]:
        specs = self.namespaces()
        for ns, spec in specs.items():
            for i in sorted(self.entry_ids(ns)):
                row = self.r.hmget(self._k("e", i), "prompt", "response", "created", "accessed")
                if row[0] is not None:
                    yield {"namespace": ns, "spec": spec, "prompt": row[0].decode(), "response": row[1].decode(),
                           "created": float(row[2]), "accessed": float(row[3])}

    def import_rows(self, rows: Iterable[dict[str, Any]]) -> int:
        return import_rows(self, rows)

    def _embed(self, texts: list[str]) -> np.ndarray:
        if self._embed_cache is not None and all(t in self._embed_cache for t in texts):
            return np.stack([self._embed_cache[t] for t in texts])
        return encode(self.embedder, texts)

    def flush(self) -> None:
        """Write buffered access times (LRU order); the entries are already in Redis."""
        self._write_touched()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            try:
                self.flush()
            finally:
                self.r.close()

    def __enter__(self) -> RedisSemanticCache:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def open_cache(embedder: CacheEmbedder, store: Any, threshold: float = 0.9, **kwargs: Any):
    """A semantic cache over ``store``: a directory (SQLite + FAISS files, :class:`SemanticCache`) or a
    ``redis://`` / ``rediss://`` / ``unix://`` URL (:class:`RedisSemanticCache`; ``prefix=`` names its keys)."""
    from lmlab.cache.store import SemanticCache

    if isinstance(store, str) and store.split("://", 1)[0] in ("redis", "rediss", "unix") and "://" in store:
        return RedisSemanticCache(embedder, store, threshold, **kwargs)
    kwargs.pop("prefix", None)
    return SemanticCache(embedder, store, threshold, **kwargs)
