"""GPTCache (zilliztech/GPTCache, the ``gptcache`` package) run as a peer: its own pipeline (``get``/``put``
adapter API, ``sqlite,faiss`` data manager, ``SearchDistanceEvaluation``) with our embedding function.

gptcache 0.1.44 does not declare ``sqlalchemy`` or ``faiss-cpu`` and runs ``pip install`` when its storage
modules are imported without them. :func:`import_gptcache` checks both first (one clear error naming the
extra), and makes gptcache's installer raise instead of installing, so it can never install at run time.

Threshold mapping: GPTCache's FAISS store returns the squared L2 distance d of the top hit and the evaluator
scores it ``4 - d``; the adapter serves a hit when ``score >= 4 * similarity_threshold``. For unit vectors
d = 2 - 2 cos, so ``similarity_threshold = (tau + 1) / 2`` is the same rule as ``cos >= tau``.
"""

from __future__ import annotations

import importlib.util
import json
import tempfile
from collections.abc import Callable, Hashable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lmlab.cache.store import CacheError

PEER_DEPS = {"faiss": "faiss-cpu", "sqlalchemy": "sqlalchemy"}


class PipInstallRefused(RuntimeError):
    """gptcache tried to pip-install a package at run time."""


def _refuse(package: str, warn: bool = False) -> None:
    raise PipInstallRefused(f"gptcache tried to `pip install {package}` at run time; install it yourself: "
                            "pip install -e '.[cache]'")


def import_gptcache() -> Any:
    """Import gptcache after checking its undeclared dependencies; its run-time installer is disabled."""
    missing = [pkg for mod, pkg in PEER_DEPS.items() if importlib.util.find_spec(mod) is None]
    if importlib.util.find_spec("gptcache") is None:
        missing.insert(0, "gptcache==0.1.44")
    if missing:
        raise CacheError(f"peer gptcache: missing {', '.join(missing)}; pip install -e '.[cache]' "
                         "(gptcache would otherwise pip-install them itself at import)")
    import gptcache.utils
    import gptcache.utils.dependency_control

    gptcache.utils.prompt_install = _refuse
    gptcache.utils.dependency_control.prompt_install = _refuse
    return gptcache


class GPTCachePipeline:
    """One GPTCache instance (sqlite + faiss under ``data_dir``) with a cosine threshold ``tau``."""

    def __init__(self, embed_one: Callable[[str], np.ndarray], dim: int, tau: float, data_dir: str | Path,
                 max_size: int = 1_000_000):
        import_gptcache()
        from gptcache import Cache, Config
        from gptcache.manager import manager_factory
        from gptcache.processor.pre import get_prompt
        from gptcache.similarity_evaluation import SearchDistanceEvaluation

        self.cache = Cache()
        dm = manager_factory("sqlite,faiss", data_dir=str(data_dir), vector_params={"dimension": dim},
                             eviction_params={"max_size": max_size})
        self.cache.init(pre_embedding_func=get_prompt, embedding_func=lambda x, **_: embed_one(x),
                        data_manager=dm, similarity_evaluation=SearchDistanceEvaluation(),
                        config=Config(similarity_threshold=min(max((tau + 1) / 2, 0.0), 1.0)))

    def get(self, prompt: str) -> Any:
        from gptcache.adapter.api import get

        return get(prompt, cache_obj=self.cache)

    def put(self, prompt: str, response: str) -> None:
        from gptcache.adapter.api import put

        put(prompt, response, cache_obj=self.cache)

    def close(self) -> None:
        self.cache.data_manager.close()
        # Cache.init registered an atexit hook that closes the data manager again (after our temp dir is gone)
        self.cache.data_manager = _Closed()


class _Closed:
    def close(self) -> None:
        pass


def memo_encoder(encode: Callable[[list[str]], np.ndarray], texts: Sequence[str]) -> Callable[[str], np.ndarray]:
    """Embed ``texts`` once (batched) and serve single-text lookups from the table; other texts are encoded
    on demand. The threshold sweep replays the same stream many times."""
    uniq = sorted(set(texts))
    table = dict(zip(uniq, np.asarray(encode(uniq), dtype=np.float32)))

    def one(text: str) -> np.ndarray:
        v = table.get(text)
        return v if v is not None else np.asarray(encode([text]), dtype=np.float32)[0]

    return one


def gptcache_simulate(embed_one: Callable[[str], np.ndarray], dim: int, texts: Sequence[str],
                      keys: Sequence[Hashable], taus: Sequence[float], workdir: str | Path | None = None,
                      progress: bool = False) -> list[dict[str, Any]]:
    """The caching simulation of :func:`lmlab.cache.simulate.simulate`, but every lookup and insert goes through
    GPTCache's adapter (``get``; on a miss ``put``). The stored response names the key, so a hit is correct
    when it names the query's key."""
    from tqdm import tqdm

    rows = []
    if workdir is None and Path("/dev/shm").is_dir():
        workdir = "/dev/shm"  # GPTCache commits SQLite on every get and put; keep fsync out of a quality sweep
    tmp = tempfile.TemporaryDirectory(dir=workdir)
    try:
        for t_i, tau in enumerate(tqdm(list(taus), disable=not progress, desc="gptcache sweep")):
            pipe = GPTCachePipeline(embed_one, dim, float(tau), Path(tmp.name) / f"tau{t_i}")
            hits = correct = 0
            for text, key in zip(texts, keys):
                ans = pipe.get(text)
                if ans is not None:
                    hits += 1
                    correct += int(ans == json.dumps(key))
                else:
                    pipe.put(text, json.dumps(key))
            pipe.close()
            n = len(texts)
            rows.append({"tau": float(tau), "hits": hits, "correct_hits": correct, "wrong_hits": hits - correct,
                         "hit_rate": hits / n, "correct_hit_rate": correct / n, "wrong_hit_rate": (hits - correct) / n,
                         "wrong_per_hit": (hits - correct) / hits if hits else 0.0, "n": n})
    finally:
        tmp.cleanup()
    return rows
