"""Two processes on one SQLite store: a put acknowledged by one is served by the other's next lookup."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from lmlab.cache import HashingEmbedder, Namespace, SemanticCache

NS = Namespace(model="m", params={"temperature": 0.0}, system_prompt="", tenant="t")

# The other process: opens the store, loads its index (a lookup), then serves commands from stdin:
# "get PROMPT" prints the response (or -), "put PROMPT|RESPONSE" prints "ok" after the put returned.
PEER = textwrap.dedent("""
    import sys
    from lmlab.cache import HashingEmbedder, Namespace, SemanticCache
    ns = Namespace(model="m", params={"temperature": 0.0}, system_prompt="", tenant="t")
    c = SemanticCache(HashingEmbedder(64), sys.argv[1], threshold=0.5)
    c.get("warm up the index", ns)
    print("ready", flush=True)
    for line in sys.stdin:
        cmd, _, arg = line.rstrip("\\n").partition(" ")
        if cmd == "get":
            h = c.get(arg, ns)
            print("-" if h is None else f"{h.response}|{int(h.exact)}", flush=True)
        elif cmd == "put":
            p, _, r = arg.partition("|")
            c.put(p, r, ns)
            print("ok", flush=True)
    c.close()
""")


def test_two_processes_share_one_store(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
    with SemanticCache(HashingEmbedder(64), tmp_path, threshold=0.5) as c:
        c.put("What is the capital of Peru?", "Lima.", NS)  # both indexes exist before the writes below
        p = subprocess.Popen([sys.executable, "-c", PEER, str(tmp_path)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True, env=env)
        try:
            def ask(line: str) -> str:
                p.stdin.write(line + "\n")
                p.stdin.flush()
                return p.stdout.readline().strip()

            assert p.stdout.readline().strip() == "ready"
            assert ask("get Which city is the capital of Peru?") == "Lima.|0"  # written before it opened
            # this process writes; the peer's already-loaded index must pick the row up
            c.put("When was Anna Adler born?", "1901.", NS)
            assert ask("get When was Anna Adler born?") == "1901.|1"  # exact path
            c.put("Where was Anna Adler born in Austria?", "Vienna.", NS)
            assert ask("get Where was Anna Adler born in Austria, exactly?") == "Vienna.|0"  # semantic path
            # the peer writes; this process's loaded index picks it up, for semantic and exact lookups
            assert c.get("warm", NS) is None
            assert ask("put What is the capital of Chile?|Santiago.") == "ok"
            h = c.get("Which city is the capital of Chile?", NS)
            assert h is not None and h.response == "Santiago." and not h.exact
            # interleaved writes from both sides keep both indexes complete (no duplicates, nothing missing)
            for i in range(5):
                c.put(f"local question {i} about rivers?", f"local {i}", NS)
                assert ask(f"put remote question {i} about mountains?|remote {i}") == "ok"
            for i in range(5):
                assert ask(f"get local question {i} about rivers, please?") == f"local {i}|0"
                h = c.get(f"remote question {i} about mountains, please?", NS)
                assert h is not None and h.response == f"remote {i}"
            ids = c.index_ids(NS)
            assert ids == c.entry_ids(NS) and len(ids) == len(c)
            assert c._indexes[NS.key].index.ntotal == len(c)  # no id added twice
        finally:
            p.stdin.close()
            assert p.wait(timeout=20) == 0
