"""Operational faults of `lmlab serve`, all on 127.0.0.1 and bounded in time:

- the server (a `lmlab serve` subprocess: fake backend + SQLite cache) is SIGKILLed during a load run and
  restarted: every write it acknowledged (`x-lmlab-cache: stored`) is there, SQLite is intact, the vector index
  agrees with SQLite;
- `lmlab serve --workers 2`: an entry acknowledged by one worker is served by the other's next lookup, exact and
  semantic (each connection is pinned to a worker, found from the workers' sockets);
- two gateways sharing one Redis entry store: a write through one is a hit on the other; tenants never cross;
- upstreams that break at the TCP level (close before answering, close inside the headers, stall inside the
  body) give the client a clean error within the configured timeout, and the gateway stays healthy.
(500s, hangs and streams dropped mid-way are in tests/integration/test_serve.py.)
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from lmlab.serve.testing import free_port

pytestmark = pytest.mark.slow

SRC = Path(__file__).resolve().parents[2] / "src"
CONFIG = """
[server]
state_dir = "{state}"
[[backends]]
name = "fake"
kind = "fake"
[guard]
enabled = false
[cache]
embedder = "hashing"
threshold = {threshold}
[logging]
access = false
level = "warning"
"""


def write_config(tmp: Path, threshold: float = 0.99, extra: str = "") -> Path:
    p = tmp / "gateway.toml"
    p.write_text(CONFIG.format(state=tmp / "state", threshold=threshold) + extra)
    return p


def start_server(cfg: Path, port: int, workers: int = 1, timeout_s: float = 90) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    p = subprocess.Popen([sys.executable, "-m", "lmlab.cli", "serve", "--config", str(cfg), "--port", str(port),
                          "--workers", str(workers)], env=env, start_new_session=True,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if p.poll() is not None:
            raise RuntimeError(f"lmlab serve exited with {p.returncode}: {p.stderr.read()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return p
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    kill(p)
    raise RuntimeError(f"lmlab serve did not become healthy within {timeout_s} s")


def kill(p: subprocess.Popen) -> None:
    """SIGKILL the server and every process of its session (workers included)."""
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    p.wait(timeout=10)


def body(text: str, **kw) -> dict:
    return {"model": "fake", "messages": [{"role": "user", "content": text}], "temperature": 0, "max_tokens": 32, **kw}


# -- SIGKILL during load ---------------------------------------------------------------------------------------
def test_sigkill_during_load_keeps_every_acknowledged_write(tmp_path):
    cfg = write_config(tmp_path)
    port = free_port()
    server = start_server(cfg, port)
    acked: dict[str, str] = {}
    errors: list[str] = []

    async def load(stop_at: float) -> None:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as c:
            async def worker(w: int) -> None:
                i = 0
                while time.monotonic() < stop_at:
                    prompt = f"worker {w} question {i}: what is {w} times {i}?"
                    i += 1
                    try:
                        r = await c.post("/v1/chat/completions", json=body(prompt))
                    except httpx.HTTPError as e:  # the kill: in-flight requests fail, nothing was acknowledged
                        errors.append(type(e).__name__)
                        return
                    if r.headers.get("x-lmlab-cache") == "stored":
                        acked[prompt] = r.json()["choices"][0]["message"]["content"]

            await asyncio.gather(*(worker(w) for w in range(8)))

    killer = threading.Timer(2.0, kill, args=(server,))
    killer.start()
    try:
        asyncio.run(load(time.monotonic() + 6))
    finally:
        killer.cancel()
        kill(server)
    assert len(acked) >= 20, f"the load did not get going ({len(acked)} acknowledged writes)"
    assert errors, "the server was not killed during the load"

    db = tmp_path / "state" / "cache" / "cache.sqlite"
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    stored = dict(con.execute("SELECT prompt, response FROM entries").fetchall())
    con.close()
    missing = [p for p in acked if p not in stored]
    assert not missing, f"{len(missing)} of {len(acked)} acknowledged writes lost, e.g. {missing[:3]}"
    assert all(stored[p] == a for p, a in acked.items())
    assert len(stored) <= len(acked) + 8  # at most one committed-but-unanswered write per in-flight request

    from lmlab.cache.store import open_store

    with open_store(tmp_path / "state" / "cache") as c:  # the index (stale or missing) is caught up from SQLite
        for ns in c.namespaces():
            assert c.index_ids(ns) == c.entry_ids(ns)

    server = start_server(cfg, port)  # restarted: answers from the cache
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as c:
            for prompt in list(acked)[:: max(1, len(acked) // 25)]:
                r = c.post("/v1/chat/completions", json=body(prompt))
                assert r.status_code == 200 and r.headers["x-lmlab-cache"] == "hit"
                assert r.json()["choices"][0]["message"]["content"] == acked[prompt]
    finally:
        kill(server)


# -- two workers share the SQLite cache --------------------------------------------------------------------
def worker_connections(server_pid: int, port: int, n_max: int = 40) -> dict[int, http.client.HTTPConnection]:
    """One open keep-alive connection per worker process: opens connections until each worker holds one."""
    import psutil

    workers = {}
    conns = []
    for _ in range(n_max):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/healthz")
        conn.getresponse().read()
        conns.append(conn)
        local = conn.sock.getsockname()[1]
        for child in psutil.Process(server_pid).children(recursive=True):
            try:
                cs = child.net_connections(kind="tcp")
            except psutil.Error:
                continue
            if any(c.laddr and c.raddr and c.laddr.port == port and c.raddr.port == local for c in cs):
                workers.setdefault(child.pid, conn)
        if len(workers) >= 2:
            break
    for conn in conns:
        if conn not in workers.values():
            conn.close()
    return workers


def send(conn: http.client.HTTPConnection, text: str, key: str = "k-open") -> tuple[int, dict, Any]:
    conn.request("POST", "/v1/chat/completions", body=json.dumps(body(text)),
                 headers={"content-type": "application/json", "authorization": f"Bearer {key}"})
    r = conn.getresponse()
    return r.status, json.loads(r.read()), r


def post(conn: http.client.HTTPConnection, text: str) -> tuple[str, str]:
    status, data, r = send(conn, text)
    assert status == 200, data
    return r.getheader("x-lmlab-cache"), data["choices"][0]["message"]["content"]


KEYS = """
[[auth.keys]]
sha256 = "{open}"
[[auth.keys]]
sha256 = "{limited}"
rps = 0.001
burst = 3
"""


def test_two_workers_serve_each_others_writes(tmp_path):
    """...and share the rate limits: a key's bucket of 3 holds 3 requests in all, not 3 per worker."""
    from lmlab.serve import hash_key

    cfg = write_config(tmp_path, threshold=0.8,
                       extra=KEYS.format(open=hash_key("k-open"), limited=hash_key("k-limited")))
    port = free_port()
    server = start_server(cfg, port, workers=2)
    try:
        conns = worker_connections(server.pid, port)
        assert len(conns) == 2, f"connections reached {len(conns)} worker(s), not 2"
        a, b = conns.values()
        assert post(a, "zebra warm-up one")[0] == "stored"  # both workers' indexes exist before the writes below
        assert post(b, "kangaroo jumps high")[0] == "stored"
        for first, second, q in [(a, b, "What is the capital of Peru?"), (b, a, "How tall is Mount Everest?")]:
            state, answer = post(first, q)
            assert state == "stored"
            assert post(second, q) == ("hit", answer)  # exact path
            assert post(second, q.replace("?", ", exactly?")) == ("hit", answer)  # semantic path: index caught up
        statuses = [send(c, f"limited {i}", "k-limited")[0] for i in range(3) for c in (a, b)]
        assert sorted(statuses) == [200, 200, 200, 429, 429, 429], statuses
        for c in conns.values():
            c.close()
    finally:
        kill(server)


# -- two gateways on one Redis entry store -----------------------------------------------------------------
def test_two_gateways_share_a_redis_store(tmp_path):
    from redis_helper import redis_server

    from lmlab.serve import GatewayConfig, create_app, hash_key
    from lmlab.serve.config import AuthConfig, BackendConfig, CacheConfig, GuardConfig, KeyConfig, ServerConfig
    from lmlab.serve.testing import serve_in_thread

    with redis_server(tmp_path) as url:
        def cfg(name: str) -> GatewayConfig:
            return GatewayConfig(server=ServerConfig(state_dir=str(tmp_path / name)),
                                 backends=(BackendConfig(name="fake", kind="fake"),),
                                 guard=GuardConfig(enabled=False), cache=CacheConfig(embedder="hashing", store=url),
                                 auth=AuthConfig(keys=(KeyConfig(sha256=hash_key("ka"), tenant="a"),
                                                       KeyConfig(sha256=hash_key("kb"), tenant="b"))))

        with serve_in_thread(create_app(cfg("node1"))) as g1, serve_in_thread(create_app(cfg("node2"))) as g2:
            def ask(g: str, key: str, text: str) -> str:
                r = httpx.post(f"{g}/v1/chat/completions", json=body(text), headers={"authorization": f"Bearer {key}"},
                               timeout=10)
                assert r.status_code == 200, r.text
                return r.headers["x-lmlab-cache"]

            assert ask(g1, "ka", "What is the capital of Peru?") == "stored"
            assert ask(g2, "ka", "What is the capital of Peru?") == "hit"
            assert ask(g2, "kb", "What is the capital of Peru?") == "stored"  # tenant b never gets a's entry
            assert ask(g1, "kb", "What is the capital of Peru?") == "hit"
            assert ask(g2, "ka", "What is the capital of Chile?") == "stored"
            assert ask(g1, "ka", "What is the capital of Chile?") == "hit"


# -- upstreams that break at the TCP level -----------------------------------------------------------------
class BrokenUpstream:
    """A TCP server on 127.0.0.1 speaking just enough HTTP to break in a chosen place, chosen by the request's
    model: ``close`` (closes after reading the request), ``headers`` (closes inside the status line and
    headers), ``stall`` (sends headers and half a JSON body, then says nothing)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            n = int(next((ln.split(b":")[1] for ln in head.split(b"\r\n") if ln.lower().startswith(b"content-length")),
                         b"0"))
            req = json.loads(await reader.readexactly(n)) if n else {}
            mode = req.get("model")
            if mode == "headers":
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: applic")
                await writer.drain()
            elif mode == "stall":
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 400\r\n\r\n"
                             b'{"id": "x", "object": "chat.completion", "choices": [{"ind')
                await writer.drain()
                await asyncio.sleep(60)
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    def __enter__(self) -> str:
        self.thread.start()
        self.server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self.handle, "127.0.0.1", self.port), self.loop).result(10)
        return f"http://127.0.0.1:{self.port}/v1"

    def __exit__(self, *exc) -> None:
        async def shutdown() -> None:  # every connection handler finishes inside the loop before it stops
            self.server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.server.wait_closed()

        asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
        self.loop.close()


def test_upstream_tcp_faults_give_clean_errors(tmp_path):
    from lmlab.serve import GatewayConfig, create_app
    from lmlab.serve.config import BackendConfig, CacheConfig, GuardConfig, ServerConfig
    from lmlab.serve.testing import serve_in_thread

    timeout_s = 1.5
    with BrokenUpstream() as up_url:
        up = dict(kind="upstream", url=up_url, connect_timeout_s=0.5, read_timeout_s=0.5, timeout_s=timeout_s,
                  retries=1, backoff_s=0.05, breaker_failures=50)
        cfg = GatewayConfig(server=ServerConfig(state_dir=str(tmp_path / "state")),
                            backends=(BackendConfig(name="fake", kind="fake"),
                                      *(BackendConfig(name=m, model=m, **up) for m in ("close", "headers", "stall"))),
                            guard=GuardConfig(enabled=False), cache=CacheConfig(enabled=False))
        with serve_in_thread(create_app(cfg)) as g, httpx.Client(base_url=g, timeout=20) as c:
            for model in ("close", "headers", "stall"):
                for stream in (False, True):
                    t0 = time.perf_counter()
                    r = c.post("/v1/chat/completions", json={**body("hi", stream=stream), "model": model})
                    took = time.perf_counter() - t0
                    assert took < timeout_s + 1.0, (model, stream, took)
                    if stream and r.status_code == 200:  # the failure arrives as an error event in the stream
                        assert '"error"' in r.text and "[DONE]" not in r.text, (model, r.text[-300:])
                    else:
                        assert r.status_code in (502, 504), (model, stream, r.status_code, r.text)
                        err = r.json()["error"]
                        assert err["message"] and err["type"], err
                    assert c.get("/healthz").status_code == 200
            assert c.post("/v1/chat/completions", json=body("still here?")).status_code == 200
