"""Per-key token buckets: ``rate`` requests per second, bursts of up to ``burst``.

``take(key, rate, burst)`` returns 0.0 when a request may go ahead (a token was taken), else the seconds until
the next token (the 429's Retry-After). Three stores, chosen by :func:`open_buckets`:

- :class:`LocalBuckets`: in this process's memory (one uvicorn worker).
- :class:`SQLiteBuckets`: one SQLite file that every worker process of one machine updates in a write
  transaction, so N workers together allow the configured rate, not N times it. The state is not durable
  (``synchronous = OFF``): after a crash a bucket may be fuller than it was, never emptier than it should be.
- :class:`RedisBuckets`: a hash per key in Redis, updated by one Lua script with the Redis server's clock, so
  every gateway that shares the Redis cache store shares the limits too.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any


def _refill(tokens: float, last: float, now: float, rate: float, burst: float) -> tuple[float, float]:
    """(tokens left after this request, wait): take one token if there is one."""
    tokens = min(burst, tokens + max(0.0, now - last) * rate)
    if tokens >= 1:
        return tokens - 1, 0.0
    return tokens, (1 - tokens) / rate


class LocalBuckets:
    def __init__(self, clock: Any = time.monotonic):
        self.clock = clock
        self._b: dict[str, tuple[float, float]] = {}

    def take(self, key: str, rate: float, burst: float) -> float:
        if rate <= 0:
            return 0.0
        now = self.clock()
        tokens, last = self._b.get(key, (burst, now))
        tokens, wait = _refill(tokens, last, now, rate, burst)
        self._b[key] = (tokens, now)
        return wait

    def close(self) -> None:
        pass


class SQLiteBuckets:
    """Buckets in ``path`` (WAL), shared by the processes that open it. Wall-clock time (``time.time``): every
    process of the machine reads the same clock; a clock step back only pauses refilling."""

    def __init__(self, path: str | Path, clock: Any = time.time):
        import sqlite3

        self.path, self.clock = Path(path), clock
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), timeout=5.0, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=OFF")
        self._db.execute("CREATE TABLE IF NOT EXISTS buckets (key TEXT PRIMARY KEY, tokens REAL NOT NULL, "
                         "t REAL NOT NULL)")

    def take(self, key: str, rate: float, burst: float) -> float:
        if rate <= 0:
            return 0.0
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")  # the read and the write below are one step for all processes
            try:
                now = self.clock()
                row = db.execute("SELECT tokens, t FROM buckets WHERE key = ?", (key,)).fetchone()
                tokens, wait = _refill(row[0] if row else burst, row[1] if row else now, now, rate, burst)
                db.execute("INSERT OR REPLACE INTO buckets (key, tokens, t) VALUES (?, ?, ?)",
                           (key, tokens, max(now, row[1]) if row else now))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return wait

    def close(self) -> None:
        with self._lock:
            self._db.close()


# the whole bucket update in one script: atomic for every client of this Redis, on the server's clock
_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local v = redis.call('HMGET', KEYS[1], 'tokens', 't')
local tokens = tonumber(v[1]) or burst
local last = tonumber(v[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - last) * rate)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = (1 - tokens) / rate end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 't', tostring(math.max(now, last)))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return tostring(wait)
"""


class RedisBuckets:
    def __init__(self, url: str, prefix: str = "lmlab:ratelimit:"):
        import redis

        self.prefix = prefix
        self._r = redis.Redis.from_url(url)
        self._script = self._r.register_script(_LUA)

    def take(self, key: str, rate: float, burst: float) -> float:
        if rate <= 0:
            return 0.0
        return float(self._script(keys=[self.prefix + key], args=[rate, burst]))

    def close(self) -> None:
        self._r.close()


def open_buckets(cfg: Any) -> LocalBuckets | SQLiteBuckets | RedisBuckets:
    """The buckets a gateway config needs: Redis when the cache store is a ``redis://`` URL (shared by every
    gateway on it), SQLite under the state directory with ``server.workers > 1``, else this process's memory."""
    store = cfg.cache.store or ""
    if store.startswith(("redis://", "rediss://", "unix://")):
        return RedisBuckets(store)
    if cfg.server.workers > 1:
        return SQLiteBuckets(cfg.state_dir() / "ratelimit.sqlite")
    return LocalBuckets()


__all__ = ["LocalBuckets", "RedisBuckets", "SQLiteBuckets", "open_buckets"]
