"""Start uvicorn for ``lmlab serve``: one process, or ``server.workers`` processes sharing the cache store (SQLite
WAL) and one Prometheus multiprocess directory."""

from __future__ import annotations

import json
import logging
import os
import shutil
from typing import Any

from lmlab.serve.config import CONFIG_ENV, GatewayConfig

log = logging.getLogger("lmlab.serve")


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


def run_server(cfg: GatewayConfig, **uvicorn_kwargs: Any) -> None:
    import uvicorn

    s = cfg.server
    level = cfg.logging.level.lower()
    kw: dict[str, Any] = {"host": s.host, "port": s.port, "log_level": level, "access_log": False,
                          "timeout_graceful_shutdown": 10, **uvicorn_kwargs}
    if s.workers > 1:
        prepare_workers(cfg)
        uvicorn.run("lmlab.serve.app:app_from_env", factory=True, workers=s.workers, **kw)
    else:
        from lmlab.serve.app import create_app

        uvicorn.run(create_app(cfg), **kw)
