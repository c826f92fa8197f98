"""A semantic prompt cache: SQLite (WAL) holds the entries, a FAISS index per namespace is derived state.

>>> import tempfile
>>> from lmlab.cache import HashingEmbedder, Namespace, SemanticCache
>>> ns = Namespace(model="smollm2-135m", params={"temperature": 0}, system_prompt="", tenant="demo")
>>> with SemanticCache(HashingEmbedder(64), tempfile.mkdtemp(), threshold=0.9) as c:
...     _ = c.put("What is the capital of Peru?", "Lima.", ns)
...     c.get("What is the capital of Peru?", ns).response, c.get("What is the capital of Chile?", ns)
('Lima.', None)

Policy (the paper's): embed the prompt, find the most similar cached prompt *in the same namespace*, and
serve its response when the cosine similarity is >= ``threshold``. An identical prompt is served from an
exact-match fast path (no embedding, no index). A namespace (model + sampling parameters + system prompt +
tenant) is a hard wall: nothing is ever looked up across namespaces.

Durability: ``put`` returns after the SQLite transaction committed (WAL, ``synchronous=FULL``); the vector
index is only a derived copy, written every ``flush_every`` puts and on :meth:`close`. On open, an index
file that is missing, truncated, garbage or written by another embedder is rebuilt from the vectors stored
in SQLite, and an index that lags SQLite (a crash between flushes) is caught up from it. Entry ids are
never reused (AUTOINCREMENT), so a stale index can never point at the wrong entry.

Eviction: entries older than ``ttl_s`` (since written) are never served and are deleted when met;
above ``max_entries`` the least recently used entries are deleted on put.

Concurrency: several processes may read and write one store (e.g. the workers of ``lmlab serve``): SQLite
serialises the writers, the exact-match path reads SQLite directly, and each process's vector index catches up
with rows committed by the others before it searches (``PRAGMA data_version`` says when another connection
committed; entry ids grow in commit order, so the rows after the index's watermark are the new ones). Rows
deleted by another process are dropped from the index when a search meets them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from lmlab.cache.embedders import CacheEmbedder
from lmlab.config import ConfigError
from lmlab.io import atomic_path

log = logging.getLogger(__name__)

SCHEMA = 1
INDEX_MAGIC = b"LMLABIDX1\n"
DEFAULT_MAX_PROMPT_BYTES = 8 * 1024 * 1024
#: the similarity of two different prompts is capped here, so threshold 1.0 serves exact duplicates only
NON_IDENTICAL_MAX = 1.0 - 1e-6


class CacheError(ConfigError):
    """Bad input to the cache or a store that cannot be used as asked; the message names the field and fix."""


@dataclass(frozen=True)
class Namespace:
    """What must match for an answer to be reusable: the model, its sampling parameters, the system prompt and
    the tenant. ``key`` is a stable hash of all four."""

    model: str
    params: dict[str, Any] = field(default_factory=dict)
    system_prompt: str = ""
    tenant: str = "default"

    def spec(self) -> dict[str, Any]:
        return {"model": self.model, "params": self.params, "system_prompt": self.system_prompt,
                "tenant": self.tenant}

    @property
    def key(self) -> str:
        blob = json.dumps(self.spec(), sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return "ns-" + hashlib.sha256(blob.encode()).hexdigest()[:20]

    def __hash__(self) -> int:
        return hash(self.key)


NamespaceLike = Namespace | str


def _ns(namespace: NamespaceLike) -> tuple[str, dict[str, Any]]:
    if isinstance(namespace, Namespace):
        if not isinstance(namespace.model, str) or not namespace.model:
            raise CacheError("namespace.model: empty; name the model whose answers are cached")
        try:
            json.dumps(namespace.params, sort_keys=True)
        except TypeError:
            raise CacheError("namespace.params: not JSON-serialisable; pass plain numbers/strings") from None
        return namespace.key, namespace.spec()
    if isinstance(namespace, str) and namespace.strip() and len(namespace) <= 256 and namespace.isprintable():
        return namespace, {"name": namespace}
    raise CacheError(f"namespace: {namespace!r} is not a Namespace or a printable name of 1-256 characters")


def _text(value: Any, what: str, max_bytes: int) -> str:
    """One clear error per bad input; bytes must be UTF-8."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        try:
            value = bytes(value).decode("utf-8")
        except UnicodeDecodeError as e:
            raise CacheError(f"{what}: not valid UTF-8 (bad byte at offset {e.start}); decode it with the right "
                             "encoding first") from None
    if not isinstance(value, str):
        raise CacheError(f"{what}: expected text (str or UTF-8 bytes), got {type(value).__name__}")
    if not value.strip():
        raise CacheError(f"{what}: empty or whitespace only; pass a non-empty string")
    try:
        n = len(value.encode("utf-8"))
    except UnicodeEncodeError as e:
        raise CacheError(f"{what}: contains an unpaired surrogate at index {e.start} (undecodable bytes?); "
                         "pass valid Unicode") from None
    if n > max_bytes:
        raise CacheError(f"{what}: {n} bytes is over the limit of {max_bytes}; raise max_prompt_bytes or shorten it")
    return value


def _hash(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()


@dataclass
class Hit:
    response: str
    similarity: float  # cosine similarity of the prompts (1.0 for the exact-match path)
    prompt: str  # the cached prompt that was matched
    entry_id: int
    exact: bool


class _Index:
    """FAISS inner-product index over unit vectors with our ids (IndexIDMap2). ``flat`` is exact search;
    ``hnsw`` is approximate (graph) search, whose deleted ids stay in the graph as tombstones until a rebuild."""

    def __init__(self, dim: int, kind: str, hnsw_m: int, ef_search: int, ef_construction: int):
        import faiss

        self.faiss, self.kind, self.dim = faiss, kind, dim
        self.params = (hnsw_m, ef_search, ef_construction)
        if kind == "flat":
            base = faiss.IndexFlatIP(dim)
        else:
            base = faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
            base.hnsw.efSearch, base.hnsw.efConstruction = ef_search, ef_construction
        self.index = faiss.IndexIDMap2(base)
        self.hwm = 0  # the largest entry id ever added
        self.synced = 0  # every row of the namespace with id <= synced is in the index (or was deleted)
        self.data_version = None  # the connection's PRAGMA data_version when the index last caught up
        self.dead: set[int] = set()  # hnsw tombstones
        self.dirty = 0

    def add(self, ids: np.ndarray, vecs: np.ndarray) -> None:
        if len(ids):
            self.index.add_with_ids(np.ascontiguousarray(vecs, dtype=np.float32), np.asarray(ids, dtype=np.int64))
            self.hwm = max(self.hwm, int(np.max(ids)))
            self.dirty += len(ids)

    def remove(self, ids: Iterable[int]) -> None:
        ids = [int(i) for i in ids]
        if not ids:
            return
        if self.kind == "flat":
            self.index.remove_ids(np.asarray(ids, dtype=np.int64))
        else:
            self.dead.update(ids)
        self.dirty += len(ids)

    def ids(self) -> np.ndarray:
        return self.faiss.vector_to_array(self.index.id_map).astype(np.int64)

    @property
    def live(self) -> int:
        return self.index.ntotal - len(self.dead)

    def search(self, vec: np.ndarray, k: int) -> list[tuple[float, int]]:
        if self.index.ntotal == 0:
            return []
        k = min(self.index.ntotal, k + len(self.dead) if self.kind == "hnsw" else k)
        sims, ids = self.index.search(np.ascontiguousarray(vec.reshape(1, -1), dtype=np.float32), k)
        return [(float(s), int(i)) for s, i in zip(sims[0], ids[0]) if i >= 0 and int(i) not in self.dead]

    def to_bytes(self, header: dict[str, Any]) -> bytes:
        payload = self.faiss.serialize_index(self.index).tobytes()
        header = {**header, "hwm": self.hwm, "dead": sorted(self.dead), "kind": self.kind, "n": int(self.index.ntotal),
                  "payload_bytes": len(payload), "sha256": hashlib.sha256(payload).hexdigest()}
        return INDEX_MAGIC + json.dumps(header).encode() + b"\n" + payload

    @classmethod
    def from_bytes(cls, blob: bytes, expect: dict[str, Any], kind: str, params: tuple[int, int, int]) -> _Index:
        """Raises ValueError on anything wrong: magic, header, length, checksum, dimension, fingerprint."""
        import faiss

        if not blob.startswith(INDEX_MAGIC):
            raise ValueError("not an lmlab index file (bad magic)")
        nl = blob.find(b"\n", len(INDEX_MAGIC))
        if nl < 0:
            raise ValueError("truncated header")
        header = json.loads(blob[len(INDEX_MAGIC):nl])
        payload = blob[nl + 1:]
        if len(payload) != header.get("payload_bytes"):
            raise ValueError(f"truncated payload ({len(payload)} of {header.get('payload_bytes')} bytes)")
        if hashlib.sha256(payload).hexdigest() != header.get("sha256"):
            raise ValueError("checksum mismatch")
        for k, v in expect.items():
            if header.get(k) != v:
                raise ValueError(f"written for {k}={header.get(k)!r}, expected {v!r}")
        if header.get("kind") != kind:
            raise ValueError(f"index kind {header.get('kind')!r}, expected {kind!r}")
        idx = cls(int(expect["dim"]), kind, *params)
        idx.index = faiss.deserialize_index(np.frombuffer(payload, dtype=np.uint8))
        if kind == "hnsw":
            faiss.downcast_index(idx.index.index).hnsw.efSearch = params[1]
        idx.hwm, idx.dead, idx.dirty = int(header["hwm"]), set(header.get("dead", [])), 0
        if idx.index.d != expect["dim"] or idx.index.ntotal != header["n"]:
            raise ValueError("index contents disagree with its header")
        return idx


def import_rows(cache: Any, rows: Iterable[dict[str, Any]]) -> int:
    """Put rows from ``lmlab cache export`` into ``cache`` (any store with ``put``); returns the count."""
    n = 0
    for i, r in enumerate(rows):
        try:
            spec = r["spec"]
            ns: NamespaceLike = Namespace(**spec) if set(spec) == {"model", "params", "system_prompt", "tenant"} \
                else spec.get("name", r["namespace"])
            cache.put(r["prompt"], r["response"], ns)
        except (KeyError, TypeError) as e:
            raise CacheError(f"import row {i}: missing or bad field {e}; rows come from `lmlab cache export`") from None
        n += 1
    return n


def encode(embedder: Any, texts: list[str]) -> np.ndarray:
    """``embedder.encode(texts)`` as float32, its shape checked against the embedder's dimension."""
    v = np.asarray(embedder.encode(texts), dtype=np.float32)
    if v.shape != (len(texts), embedder.dim):
        raise CacheError(f"embedder: returned shape {v.shape}, expected ({len(texts)}, {embedder.dim})")
    return v


class SemanticCache:
    """``get(prompt, namespace)`` / ``put(prompt, response, namespace)`` over a store directory.

    ``threshold``: serve a cached answer when cos(prompt, cached prompt) >= threshold (1.0: exact duplicates
    only). ``index``: ``"flat"`` (exact search, the default) or ``"hnsw"`` (approximate, for large stores).
    """

    def __init__(self, embedder: CacheEmbedder, store: str | Path, threshold: float = 0.9, *,
                 ttl_s: float | None = None, max_entries: int | None = None,
                 index: Literal["flat", "hnsw"] = "flat", hnsw_m: int = 32, ef_search: int = 64,
                 ef_construction: int = 80, flush_every: int = 1000,
                 max_prompt_bytes: int = DEFAULT_MAX_PROMPT_BYTES, clock: Any = time.time, shared: bool = False):
        if not -1.0 <= float(threshold) <= 1.0:
            raise CacheError(f"threshold: {threshold} is not a cosine similarity in [-1, 1]")
        if ttl_s is not None and ttl_s <= 0:
            raise CacheError(f"ttl_s: {ttl_s} must be > 0 (or None for no expiry)")
        if max_entries is not None and max_entries < 1:
            raise CacheError(f"max_entries: {max_entries} must be >= 1 (or None for no limit)")
        if index not in ("flat", "hnsw"):
            raise CacheError(f"index: {index!r}; choose 'flat' (exact) or 'hnsw' (approximate)")
        self.embedder, self.threshold = embedder, float(threshold)
        self.ttl_s, self.max_entries, self.kind = ttl_s, max_entries, index
        self.params = (hnsw_m, ef_search, ef_construction)
        self.flush_every, self.max_prompt_bytes, self.clock = flush_every, max_prompt_bytes, clock
        # every handle catches up with rows other processes committed (see the module docstring); ``shared`` is
        # kept so callers can say the store is shared, and changes nothing
        self.shared = shared
        self.path = Path(store).expanduser()
        if self.path.exists() and not self.path.is_dir():
            raise CacheError(f"store: {self.path} is a file; pass a directory (it holds cache.sqlite and index/)")
        (self.path / "index").mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self.path / "cache.sqlite", isolation_level=None, check_same_thread=False)
        self._indexes: dict[str, _Index] = {}
        self._touched: dict[int, float] = {}  # entry id -> last access, written with the next transaction
        self.counters = {"gets": 0, "exact_hits": 0, "semantic_hits": 0, "misses": 0, "puts": 0, "evicted": 0,
                         "expired": 0, "index_rebuilds": 0, "index_catchups": 0}
        self._open()

    # -- setup -----------------------------------------------------------------------------------------------
    def _open(self) -> None:
        db = self._db
        try:
            db.execute("PRAGMA journal_mode=WAL")
        except sqlite3.DatabaseError as e:
            raise CacheError(f"store: {self.path / 'cache.sqlite'} is not a usable SQLite file ({e}); move it away "
                             "or pass another store directory") from None
        db.execute("PRAGMA synchronous=FULL")
        db.execute("PRAGMA busy_timeout=5000")
        db.executescript("""
            CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
            CREATE TABLE IF NOT EXISTS namespaces (ns TEXT PRIMARY KEY, spec TEXT NOT NULL);
            CREATE TABLE IF NOT EXISTS entries (
                id INTEGER PRIMARY KEY AUTOINCREMENT, ns TEXT NOT NULL, prompt TEXT NOT NULL,
                prompt_hash BLOB NOT NULL, response TEXT NOT NULL, vec BLOB NOT NULL,
                created REAL NOT NULL, accessed REAL NOT NULL, hits INTEGER NOT NULL DEFAULT 0);
            CREATE UNIQUE INDEX IF NOT EXISTS entries_exact ON entries(ns, prompt_hash);
            CREATE INDEX IF NOT EXISTS entries_lru ON entries(accessed);
        """)
        want = {"schema": str(SCHEMA), "dim": str(self.embedder.dim), "fingerprint": self.embedder.fingerprint,
                "embedder": self.embedder.name}
        have = dict(db.execute("SELECT key, value FROM meta").fetchall())
        if not have:
            db.execute("BEGIN IMMEDIATE")
            db.executemany("INSERT OR IGNORE INTO meta VALUES (?, ?)", list(want.items()))
            db.execute("COMMIT")
            return
        if have.get("schema") != want["schema"]:
            raise CacheError(f"store: {self.path} has schema {have.get('schema')}, this lmlab reads {SCHEMA}; "
                             "export it with the lmlab that wrote it and import it here")
        if have.get("dim") != want["dim"] or have.get("fingerprint") != want["fingerprint"]:
            raise CacheError(f"embedder: store {self.path} was built with {have.get('embedder')} (dim {have.get('dim')}, "
                             f"fingerprint {have.get('fingerprint')}), not {want['embedder']} (dim {want['dim']}, "
                             f"fingerprint {want['fingerprint']}); open it with that embedder, or `lmlab cache export` "
                             "and import into a new store")

    def _index_file(self, ns: str) -> Path:
        return self.path / "index" / f"{hashlib.sha256(ns.encode()).hexdigest()[:24]}.faiss"

    def _expect(self, ns: str) -> dict[str, Any]:
        return {"dim": self.embedder.dim, "fingerprint": self.embedder.fingerprint, "ns": ns}

    def _index(self, ns: str) -> _Index:
        """The namespace's index: loaded from disk, or rebuilt; then reconciled with SQLite."""
        idx = self._indexes.get(ns)
        if idx is not None:
            return idx
        f = self._index_file(ns)
        idx = None
        dv = self._data_version()  # before the rows are read: a commit after this is caught up later
        if f.exists():
            try:
                idx = _Index.from_bytes(f.read_bytes(), self._expect(ns), self.kind, self.params)
            except Exception as e:  # noqa: BLE001 - any damage means: rebuild from SQLite
                log.warning("cache index %s is unusable (%s); rebuilding it from SQLite", f, e)
        rows_ids = np.array([r[0] for r in self._db.execute("SELECT id FROM entries WHERE ns=?", (ns,))],
                            dtype=np.int64)
        if idx is not None:
            have = idx.ids()
            if idx.dead:
                have = np.setdiff1d(have, np.fromiter(idx.dead, dtype=np.int64))
            extra = np.setdiff1d(have, rows_ids)
            missing = np.setdiff1d(rows_ids, have)
            if len(extra):
                idx.remove(extra)
            if len(missing):
                self.counters["index_catchups"] += 1
                idx.add(missing, self._vectors(missing))
        else:
            if f.exists() or len(rows_ids):
                self.counters["index_rebuilds"] += 1
            idx = self._build(ns, rows_ids)
        idx.synced = int(rows_ids.max()) if len(rows_ids) else 0
        idx.data_version = dv
        self._indexes[ns] = idx
        return idx

    def _data_version(self) -> int:
        return int(self._db.execute("PRAGMA data_version").fetchone()[0])

    def _catch_up(self, ns: str, idx: _Index) -> None:
        """Add the namespace's rows committed by other processes since the index last looked (inside a write
        transaction, or when ``PRAGMA data_version`` moved)."""
        # the largest id first: every row up to it committed before this read, so the next read sees them all;
        # ``+ns`` keeps SQLite on the rowid range instead of the (ns, prompt_hash) index
        (top,) = self._db.execute("SELECT coalesce(max(id), 0) FROM entries").fetchone()
        if top <= idx.synced:
            return
        rows = self._db.execute("SELECT id, vec FROM entries WHERE id > ? AND id <= ? AND +ns = ? ORDER BY id",
                                (idx.synced, top, ns)).fetchall()
        if rows:
            self.counters["index_catchups"] += 1
            idx.add(np.array([r[0] for r in rows], dtype=np.int64),
                    np.stack([np.frombuffer(r[1], dtype=np.float32) for r in rows]))
        idx.synced = int(top)

    def _build(self, ns: str, ids: np.ndarray) -> _Index:
        idx = _Index(self.embedder.dim, self.kind, *self.params)
        for s in range(0, len(ids), 50_000):
            chunk = ids[s:s + 50_000]
            idx.add(chunk, self._vectors(chunk))
        idx.dirty = max(idx.dirty, 1)  # write the rebuilt file at the next flush
        return idx

    def _vectors(self, ids: np.ndarray) -> np.ndarray:
        out = np.zeros((len(ids), self.embedder.dim), dtype=np.float32)
        pos = {int(i): k for k, i in enumerate(ids)}
        for s in range(0, len(ids), 900):
            chunk = [int(i) for i in ids[s:s + 900]]
            q = f"SELECT id, vec FROM entries WHERE id IN ({','.join('?' * len(chunk))})"
            for i, v in self._db.execute(q, chunk):
                out[pos[i]] = np.frombuffer(v, dtype=np.float32)
        return out

    # -- API -------------------------------------------------------------------------------------------------
    def get(self, prompt: Any, namespace: NamespaceLike) -> Hit | None:
        """The cached answer for ``prompt`` in ``namespace``, or None (a miss; also for a namespace never used)."""
        prompt = _text(prompt, "prompt", self.max_prompt_bytes)
        ns, _ = _ns(namespace)
        with self._lock:
            self.counters["gets"] += 1
            now = self.clock()
            row = self._db.execute("SELECT id, response, created FROM entries WHERE ns=? AND prompt_hash=?",
                                   (ns, _hash(prompt))).fetchone()
            if row is not None and not self._expired(row[2], now):
                self._touch(row[0], now)
                self.counters["exact_hits"] += 1
                return Hit(row[1], 1.0, prompt, row[0], True)
            known = self._db.execute("SELECT 1 FROM namespaces WHERE ns=?", (ns,)).fetchone()
        if known is None:
            self.counters["misses"] += 1
            return None
        vec = self._embed([prompt])[0]
        with self._lock:
            hit = self._search(ns, vec, now, prompt)
            self.counters["semantic_hits" if hit else "misses"] += 1
            return hit

    def nearest(self, prompt: Any, namespace: NamespaceLike) -> Hit | None:
        """The most similar live cached prompt whatever the threshold (for calibration and inspection)."""
        prompt = _text(prompt, "prompt", self.max_prompt_bytes)
        ns, _ = _ns(namespace)
        vec = self._embed([prompt])[0]
        with self._lock:
            return self._search(ns, vec, self.clock(), prompt, threshold=-2.0, touch=False)

    def _search(self, ns: str, vec: np.ndarray, now: float, prompt: str, threshold: float | None = None,
                touch: bool = True) -> Hit | None:
        thr = self.threshold if threshold is None else threshold
        idx = self._index(ns)
        dv = self._data_version()
        if dv != idx.data_version:  # another connection committed: pick up its rows
            self._catch_up(ns, idx)
            idx.data_version = dv
        for sim, eid in idx.search(vec, k=4):
            row = self._db.execute("SELECT prompt, response, created FROM entries WHERE id=?", (eid,)).fetchone()
            if row is None:  # evicted by another handle since the index was loaded
                idx.remove([eid])
                continue
            if row[0] != prompt:  # only an identical prompt is similarity 1: threshold 1.0 = exact duplicates
                sim = min(sim, NON_IDENTICAL_MAX)
            if sim < thr:
                return None
            if self._expired(row[2], now):
                self._delete([eid], "expired")
                continue
            if touch:
                self._touch(eid, now)
            return Hit(row[1], min(sim, 1.0) if row[0] == prompt else sim, row[0], eid, row[0] == prompt)
        return None

    def put(self, prompt: Any, response: Any, namespace: NamespaceLike) -> int:
        """Store ``response`` for ``prompt``; returns the entry id once the SQLite transaction committed.
        A prompt already cached in the namespace gets the new response (same entry)."""
        prompt = _text(prompt, "prompt", self.max_prompt_bytes)
        response = _text(response, "response", self.max_prompt_bytes)
        ns, spec = _ns(namespace)
        vec = self._embed([prompt])[0]
        with self._lock:
            idx = self._index(ns)  # loaded (or rebuilt) before this put's row exists
            now = self.clock()
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                self._catch_up(ns, idx)  # rows other processes committed (the write lock is held: no more come)
                idx.data_version = self._data_version()
                self._write_touched()
                db.execute("INSERT OR IGNORE INTO namespaces VALUES (?, ?)",
                           (ns, json.dumps(spec, sort_keys=True, ensure_ascii=False)))
                h = _hash(prompt)
                old = db.execute("SELECT id FROM entries WHERE ns=? AND prompt_hash=?", (ns, h)).fetchone()
                if old is not None:
                    db.execute("UPDATE entries SET response=?, created=?, accessed=? WHERE id=?",
                               (response, now, now, old[0]))
                    eid, new = old[0], False
                else:
                    cur = db.execute("INSERT INTO entries (ns, prompt, prompt_hash, response, vec, created, accessed) "
                                     "VALUES (?, ?, ?, ?, ?, ?, ?)", (ns, prompt, h, response,
                                                                      vec.astype(np.float32).tobytes(), now, now))
                    eid, new = int(cur.lastrowid), True
                evicted = self._evict_rows(exclude=eid) if new else []
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            self.counters["puts"] += 1
            self.counters["evicted"] += len(evicted)
            # the index is derived state: updated after the commit
            for ens, eids in _group(evicted).items():
                if ens in self._indexes:
                    self._indexes[ens].remove(eids)
            if new:
                idx.add(np.array([eid]), vec[None, :])
                idx.synced = max(idx.synced, eid)
            if sum(i.dirty for i in self._indexes.values()) >= self.flush_every:
                self.flush()
            return eid

    def put_many(self, items: Iterable[tuple[Any, Any]], namespace: NamespaceLike, batch_size: int = 1000) -> list[int]:
        """Store many (prompt, response) pairs: embedded in batches, one transaction per batch (a batch is
        durable when its transaction commits). Returns the entry ids."""
        ns, spec = _ns(namespace)
        items = list(items)
        ids: list[int] = []
        for s in range(0, len(items), batch_size):
            chunk = [(_text(p, "prompt", self.max_prompt_bytes), _text(r, "response", self.max_prompt_bytes))
                     for p, r in items[s:s + batch_size]]
            uniq = list(dict.fromkeys(p for p, _ in chunk))
            vecs = dict(zip(uniq, self._embed(uniq)))
            with self._lock:
                idx = self._index(ns)
                now = self.clock()
                db = self._db
                new_ids, new_vecs = [], []
                db.execute("BEGIN IMMEDIATE")
                try:
                    self._catch_up(ns, idx)
                    idx.data_version = self._data_version()
                    self._write_touched()
                    db.execute("INSERT OR IGNORE INTO namespaces VALUES (?, ?)",
                               (ns, json.dumps(spec, sort_keys=True, ensure_ascii=False)))
                    for prompt, response in chunk:
                        h = _hash(prompt)
                        old = db.execute("SELECT id FROM entries WHERE ns=? AND prompt_hash=?", (ns, h)).fetchone()
                        if old is not None:
                            db.execute("UPDATE entries SET response=?, created=?, accessed=? WHERE id=?",
                                       (response, now, now, old[0]))
                            ids.append(old[0])
                            continue
                        cur = db.execute("INSERT INTO entries (ns, prompt, prompt_hash, response, vec, created, "
                                         "accessed) VALUES (?, ?, ?, ?, ?, ?, ?)",
                                         (ns, prompt, h, response, vecs[prompt].tobytes(), now, now))
                        ids.append(int(cur.lastrowid))
                        new_ids.append(int(cur.lastrowid))
                        new_vecs.append(vecs[prompt])
                    evicted = self._evict_rows(exclude=new_ids[-1]) if new_ids else []
                    db.execute("COMMIT")
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
                self.counters["puts"] += len(chunk)
                self.counters["evicted"] += len(evicted)
                gone = set()
                for ens, eids in _group(evicted).items():
                    gone.update(eids)
                    if ens in self._indexes and ens != ns:
                        self._indexes[ens].remove(eids)
                keep = [k for k, i in enumerate(new_ids) if i not in gone]
                if keep:
                    idx.add(np.array([new_ids[k] for k in keep]), np.stack([new_vecs[k] for k in keep]))
                if new_ids:
                    idx.synced = max(idx.synced, max(new_ids))
                ns_gone = [i for i in _group(evicted).get(ns, []) if i not in set(new_ids)]
                if ns_gone:
                    self._index(ns).remove(ns_gone)
                if sum(i.dirty for i in self._indexes.values()) >= self.flush_every:
                    self.flush()
        return ids

    # -- maintenance -----------------------------------------------------------------------------------------
    def _expired(self, created: float, now: float) -> bool:
        return self.ttl_s is not None and now - created > self.ttl_s

    def _touch(self, eid: int, now: float) -> None:
        self._touched[eid] = now
        if len(self._touched) >= 256:
            # access times only order LRU eviction: written without an fsync (a crash loses some recency, no entry)
            self._db.execute("PRAGMA synchronous=OFF")
            try:
                self._db.execute("BEGIN IMMEDIATE")
                self._write_touched()
                self._db.execute("COMMIT")
            finally:
                self._db.execute("PRAGMA synchronous=FULL")

    def _write_touched(self) -> None:
        if self._touched:
            self._db.executemany("UPDATE entries SET accessed=max(accessed, ?), hits=hits+1 WHERE id=?",
                                 [(t, i) for i, t in self._touched.items()])
            self._touched.clear()

    def _evict_rows(self, exclude: int) -> list[tuple[str, int]]:
        """Inside a transaction: delete the least recently used rows above max_entries."""
        if self.max_entries is None:
            return []
        (n,) = self._db.execute("SELECT count(*) FROM entries").fetchone()
        over = n - self.max_entries
        if over <= 0:
            return []
        rows = self._db.execute("SELECT ns, id FROM entries WHERE id != ? ORDER BY accessed, id LIMIT ?",
                                (exclude, over)).fetchall()
        self._db.executemany("DELETE FROM entries WHERE id=?", [(r[1],) for r in rows])
        return [(r[0], r[1]) for r in rows]

    def _delete(self, ids: list[int], why: str) -> None:
        rows = self._db.execute(f"SELECT ns, id FROM entries WHERE id IN ({','.join('?' * len(ids))})",
                                ids).fetchall()
        self._db.execute("BEGIN IMMEDIATE")
        self._db.executemany("DELETE FROM entries WHERE id=?", [(i,) for i in ids])
        self._db.execute("COMMIT")
        self.counters[why] += len(rows)
        for ns, eids in _group(rows).items():
            if ns in self._indexes:
                self._indexes[ns].remove(eids)

    def purge_expired(self) -> int:
        """Delete every entry older than ttl_s; returns how many."""
        if self.ttl_s is None:
            return 0
        with self._lock:
            ids = [r[0] for r in self._db.execute("SELECT id FROM entries WHERE created < ?",
                                                  (self.clock() - self.ttl_s,))]
            for s in range(0, len(ids), 900):
                self._delete(ids[s:s + 900], "expired")
            return len(ids)

    def purge(self, namespace: NamespaceLike) -> int:
        """Delete a namespace and all its entries; an unknown namespace is an error naming the known ones."""
        ns, _ = _ns(namespace)
        with self._lock:
            if self._db.execute("SELECT 1 FROM namespaces WHERE ns=?", (ns,)).fetchone() is None:
                known = ", ".join(self.namespaces()) or "none"
                raise CacheError(f"namespace: {ns!r} is not in store {self.path} (known: {known})")
            self._db.execute("BEGIN IMMEDIATE")
            n = self._db.execute("DELETE FROM entries WHERE ns=?", (ns,)).rowcount
            self._db.execute("DELETE FROM namespaces WHERE ns=?", (ns,))
            self._db.execute("COMMIT")
            self._indexes.pop(ns, None)
            self._index_file(ns).unlink(missing_ok=True)
            return n

    def namespaces(self) -> dict[str, dict[str, Any]]:
        return {ns: json.loads(spec) for ns, spec in self._db.execute("SELECT ns, spec FROM namespaces ORDER BY ns")}

    def __len__(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM entries").fetchone()[0])

    def stats(self) -> dict[str, Any]:
        with self._lock:
            per_ns = dict(self._db.execute("SELECT ns, count(*) FROM entries GROUP BY ns").fetchall())
            size = sum(f.stat().st_size for f in self.path.rglob("*") if f.is_file())
            return {"store": str(self.path), "entries": len(self), "namespaces": {
                        ns: {"entries": per_ns.get(ns, 0), "spec": spec} for ns, spec in self.namespaces().items()},
                    "embedder": self.embedder.name, "fingerprint": self.embedder.fingerprint,
                    "dim": self.embedder.dim, "threshold": self.threshold, "index": self.kind,
                    "ttl_s": self.ttl_s, "max_entries": self.max_entries, "bytes_on_disk": size, **self.counters}

    def index_ids(self, namespace: NamespaceLike) -> set[int]:
        """The live entry ids in the namespace's vector index (for consistency checks)."""
        ns, _ = _ns(namespace)
        with self._lock:
            idx = self._index(ns)
            return set(int(i) for i in idx.ids()) - idx.dead

    def entry_ids(self, namespace: NamespaceLike) -> set[int]:
        ns, _ = _ns(namespace)
        return {r[0] for r in self._db.execute("SELECT id FROM entries WHERE ns=?", (ns,))}

    def export(self) -> Iterator[dict[str, Any]]:
        """Every entry as a JSON-able dict (namespace spec, prompt, response, times); vectors are left out so an
        export can be imported under another embedder."""
        specs = self.namespaces()
        for ns, prompt, response, created, accessed in self._db.execute(
                "SELECT ns, prompt, response, created, accessed FROM entries ORDER BY id"):
            yield {"namespace": ns, "spec": specs.get(ns, {}), "prompt": prompt, "response": response,
                   "created": created, "accessed": accessed}

    def import_rows(self, rows: Iterable[dict[str, Any]]) -> int:
        return import_rows(self, rows)

    def _embed(self, texts: list[str]) -> np.ndarray:
        return encode(self.embedder, texts)

    def flush(self) -> None:
        """Write dirty index files (atomically); SQLite is already durable."""
        with self._lock:
            if self._touched:
                self._db.execute("BEGIN IMMEDIATE")
                self._write_touched()
                self._db.execute("COMMIT")
            for ns, idx in self._indexes.items():
                if idx.dirty:
                    if idx.kind == "hnsw" and idx.dead and len(idx.dead) > 0.25 * max(idx.index.ntotal, 1):
                        old = idx
                        idx = self._indexes[ns] = self._build(ns, np.array(
                            sorted(i for i in self.entry_ids(ns) if i <= old.synced), dtype=np.int64))
                        idx.synced, idx.data_version = old.synced, old.data_version
                    with atomic_path(self._index_file(ns)) as tmp:
                        tmp.write_bytes(idx.to_bytes(self._expect(ns)))
                    idx.dirty = 0

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self.flush()
                self._db.close()
                self._db = None  # type: ignore[assignment]

    def __enter__(self) -> SemanticCache:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class StoredEmbedder:
    """Stands in for the embedder a store was built with, for operations that embed nothing (stats, export,
    purge, exact-match lookups); embedding raises."""

    def __init__(self, name: str, dim: int, fingerprint: str):
        self.name, self._dim, self._fp = name, dim, fingerprint

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def fingerprint(self) -> str:
        return self._fp

    def encode(self, texts: Any) -> np.ndarray:
        raise CacheError(f"embedder: this operation needs the embedder the store was built with ({self.name}); "
                         "pass it with --embedder")


def open_store(path: str | Path, **kwargs: Any) -> SemanticCache:
    """Open an existing store without its embedder (stats, export, purge)."""
    p = Path(path).expanduser()
    if not (p / "cache.sqlite").exists():
        raise CacheError(f"store: {p} has no cache.sqlite; pass the directory of an existing cache")
    db = sqlite3.connect(p / "cache.sqlite")
    try:
        meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
    except sqlite3.DatabaseError as e:
        raise CacheError(f"store: {p / 'cache.sqlite'} is not a cache database ({e})") from None
    finally:
        db.close()
    return SemanticCache(StoredEmbedder(meta.get("embedder", "?"), int(meta["dim"]), meta["fingerprint"]), p, **kwargs)


def _group(rows: list[tuple[str, int]]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for ns, i in rows:
        out.setdefault(ns, []).append(int(i))
    return out
