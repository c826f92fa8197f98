"""Start uvicorn for ``lmlab serve``.

One worker: the app in this process. ``server.workers = N > 1``: N uvicorn worker processes sharing the cache
store (SQLite WAL; each semantic lookup catches up with the others' entries) and one Prometheus multiprocess
directory. Local backends then run in ONE separate model process (``server.model_host``): it loads each local
model once, and its engine queue batches the requests of all workers; the workers reach it as an upstream on a
loopback port with a random key, and read the guard through its ``/v1/moderations``.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import subprocess
import sys
import time
from typing import Any

from lmlab.config import ConfigError
from lmlab.serve.config import (CONFIG_ENV, AuthConfig, BackendConfig, GatewayConfig, KeyConfig, RouterConfig,
                                hash_key)

log = logging.getLogger("lmlab.serve")
HOST_KEY_ENV = "LMLAB_MODEL_HOST_KEY"


def split_for_model_host(cfg: GatewayConfig, port: int, key: str) -> tuple[GatewayConfig, GatewayConfig]:
    """(the model host's config, the workers' config): local backends move to the host; the workers call them
    as upstreams, and use the host's guard when the guard reads a local model."""
    local = [b for b in cfg.backends if b.kind == "local"]
    url = f"http://127.0.0.1:{port}"
    host = cfg.replace(
        server=cfg.server.replace(host="127.0.0.1", port=port, workers=1, role="model-host", cors_origins=()),
        backends=tuple(local), cache=cfg.cache.replace(enabled=False), router=RouterConfig(alias=cfg.router.alias),
        injection=cfg.injection.replace(enabled=False),
        auth=AuthConfig(keys=(KeyConfig(sha256=hash_key(key), tenant="model-host", name="workers"),)),
        limits=cfg.limits.replace(default_rps=0.0, max_inflight=max(cfg.limits.max_inflight * cfg.server.workers,
                                                                    sum(b.max_pending + b.max_batch for b in local))))
    moved = tuple(
        BackendConfig(name=b.name, kind="upstream", url=f"{url}/v1", model=b.name, api_key_env=HOST_KEY_ENV,
                      connect_timeout_s=2.0, read_timeout_s=b.timeout_s, timeout_s=b.timeout_s, retries=0,
                      breaker_failures=max(5, b.max_pending), breaker_cooldown_s=5.0,
                      default_max_tokens=b.default_max_tokens) if b.kind == "local" else b
        for b in cfg.backends)
    guard = cfg.guard
    reads_local = guard.detector == "default" or guard.detector.endswith(".npz")
    if guard.enabled and reads_local:
        guard = guard.replace(detector=url, backend="")
    workers = cfg.replace(backends=moved, guard=guard)
    return host, workers


def _die_with_parent() -> None:
    """In the model host (Linux): receive SIGTERM when the process that started it dies, even by SIGKILL."""
    import ctypes
    import signal

    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _wait_ready(url: str, proc: subprocess.Popen, what: str) -> None:
    import httpx

    t0, said = time.monotonic(), 0.0
    while True:
        if proc.poll() is not None:
            raise ConfigError(f"the {what} exited with code {proc.returncode} before it was ready (see its log above)")
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() - said > 30:
            said = time.monotonic()
            log.info("waiting for the %s (%.0f s; a first start builds the guard, which takes minutes)", what,
                     time.monotonic() - t0)
        time.sleep(0.5)


def prepare_workers(cfg: GatewayConfig) -> str:
    """Write the resolved config for the worker processes and set the environment they inherit; returns the
    config file's path. The metrics directory is emptied first (prometheus-client's rule for a fresh start)."""
    from lmlab.io import atomic_write_text

    state = cfg.state_dir()
    state.mkdir(parents=True, exist_ok=True)
    path = state / f"gateway-{cfg.server.port}.json"
    atomic_write_text(path, json.dumps(cfg.to_dict(), indent=1))
    os.environ[CONFIG_ENV] = str(path)
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        mdir = state / f"metrics-{cfg.server.port}"
        shutil.rmtree(mdir, ignore_errors=True)
        mdir.mkdir(parents=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(mdir)
    return str(path)


def start_model_host(cfg: GatewayConfig) -> tuple[GatewayConfig, subprocess.Popen | None]:
    """Start the model process when the config has local backends and several workers; returns the workers'
    config and the process (None when not needed)."""
    if cfg.server.workers <= 1 or not cfg.server.model_host or not any(b.kind == "local" for b in cfg.backends):
        return cfg, None
    from lmlab.io import atomic_write_text
    from lmlab.serve.testing import free_port

    key = secrets.token_urlsafe(24)
    port = free_port()
    host_cfg, worker_cfg = split_for_model_host(cfg, port, key)
    state = cfg.state_dir()
    state.mkdir(parents=True, exist_ok=True)
    path = state / f"model-host-{cfg.server.port}.json"
    atomic_write_text(path, json.dumps(host_cfg.to_dict(), indent=1))
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    proc = subprocess.Popen([sys.executable, "-m", "lmlab", "serve", "--config", str(path)], env=env,
                            preexec_fn=_die_with_parent if sys.platform == "linux" else None)
    log.info("model host (pid %d) starting on 127.0.0.1:%d for %s", proc.pid, port,
             ", ".join(b.name for b in host_cfg.backends))
    _wait_ready(f"http://127.0.0.1:{port}", proc, "model host")
    os.environ[HOST_KEY_ENV] = key
    return worker_cfg, proc


def run_server(cfg: GatewayConfig, **uvicorn_kwargs: Any) -> None:
    import uvicorn

    s = cfg.server
    level = cfg.logging.level.lower()
    from lmlab.serve.netio import CoalescingHttpProtocol

    kw: dict[str, Any] = {"host": s.host, "port": s.port, "log_level": level, "access_log": False,
                          "timeout_graceful_shutdown": 10, "http": CoalescingHttpProtocol, **uvicorn_kwargs}
    if s.workers > 1:
        worker_cfg, host = start_model_host(cfg)
        try:
            prepare_workers(worker_cfg)
            uvicorn.run("lmlab.serve.app:app_from_env", factory=True, workers=s.workers, **kw)
        finally:
            if host is not None and host.poll() is None:
                host.terminate()
                try:
                    host.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    host.kill()
    else:
        from lmlab.serve.app import create_app

        uvicorn.run(create_app(cfg), **kw)


__all__ = ["prepare_workers", "run_server", "split_for_model_host", "start_model_host"]
