"""Which backend answers a request sent to the router alias (``model="auto"``).

Without a correctness matrix: the fallback order (``router.fallback``, else the order of ``[[backends]]``); a
backend that is unavailable (open circuit) is skipped, and one that fails with a server error passes the request
to the next. With ``router.matrix`` (a :func:`lmlab.routing.data.save_matrix` file whose model names are backend
names and whose questions carry text): an :class:`~lmlab.routing.embedllm.EmbedLLMRouter` is fitted on it with the
cache's embedder as question features (once; saved under ``<state_dir>/router/``), and a request goes first to the
backend it predicts most likely to answer correctly, then down the fallback order.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from lmlab.config import ConfigError
from lmlab.serve.config import RouterConfig

log = logging.getLogger("lmlab.serve")


class Router:
    def __init__(self, cfg: RouterConfig, backend_names: list[str], embedder: Any = None, state_dir: Path | None = None):
        self.cfg = cfg
        self.order = list(cfg.fallback) + [n for n in backend_names if n not in cfg.fallback]
        self.embedder = embedder
        self.model: Any = None
        self.candidates: list[str] = []
        if cfg.matrix:
            self._fit(Path(cfg.matrix), state_dir)

    @property
    def by(self) -> str:
        return "embedllm" if self.model is not None else "fallback"

    def _fit(self, path: Path, state_dir: Path | None) -> None:
        from lmlab.io import fingerprint
        from lmlab.routing.data import load_matrix
        from lmlab.routing.embedllm import EmbedLLMConfig, EmbedLLMRouter

        if self.embedder is None:
            raise ConfigError("router.matrix needs question embeddings: enable the cache (its embedder is used)")
        m = load_matrix(path)
        if not m.question_text or any(t is None for t in m.question_text):
            raise ConfigError(f"router.matrix: {path} has no question text; the router embeds the questions")
        known = [n for n in m.model_names if n in self.order]
        if not known:
            raise ConfigError(f"router.matrix: none of its models ({', '.join(m.model_names[:5])}...) is a backend name "
                              f"({', '.join(self.order)})")
        x = self.embedder.encode(list(m.question_text))
        cfg = EmbedLLMConfig(epochs=self.cfg.epochs, lr=self.cfg.lr, batch_size=self.cfg.batch_size, progress=False)
        key = fingerprint(path.with_suffix(".npz").read_bytes(), getattr(self.embedder, "fingerprint", ""),
                          cfg.to_dict())
        saved = (state_dir / "router" / f"embedllm-{key}.pt") if state_dir is not None else None
        if saved is not None and saved.exists():
            self.model = EmbedLLMRouter.load(saved, x)
        else:
            self.model = EmbedLLMRouter(cfg).fit(m, None, x)
            if saved is not None:
                saved.parent.mkdir(parents=True, exist_ok=True)
                self.model.save(saved)
        self.candidates = known
        log.info("router: EmbedLLM fitted on %s (%d questions; candidates %s)", path, m.n_questions, ", ".join(known))

    def plan(self, text: str) -> tuple[list[str], str]:
        """Backend names in the order to try, and how the first was chosen."""
        if self.model is None or not text:
            return list(self.order), "fallback"
        v = self.embedder.encode([text])[0].astype(np.float32)
        first = self.model.choose(v, candidates=self.candidates)
        return [first] + [n for n in self.order if n != first], "embedllm"
