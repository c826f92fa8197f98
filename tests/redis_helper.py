"""Start a throwaway redis-server on a free loopback port (for the tests that need one)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

SKIP_REASON = ("redis-server is not installed (apt-get install -y redis-server; .ci/run installs it): "
               "the Redis entry store tests need a local server")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def redis_server(tmp: Path, appendfsync: str = "always"):
    """Yields a redis:// URL; the server persists with AOF (fsync per write) in ``tmp`` and is stopped after."""
    exe = shutil.which("redis-server")
    if exe is None:
        if os.environ.get("CI"):  # .ci/run installs it: missing there is a broken setup, not a reason to skip
            pytest.fail(SKIP_REASON)
        pytest.skip(SKIP_REASON)
    port = free_port()
    p = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(tmp), "--save", "",
                          "--appendonly", "yes", "--appendfsync", appendfsync, "--protected-mode", "yes",
                          "--logfile", str(tmp / "redis.log")],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        break
            except OSError:
                pass
            if p.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"redis-server did not start (see {tmp / 'redis.log'})")
            time.sleep(0.02)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        p.terminate()
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
