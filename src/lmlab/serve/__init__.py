"""``lmlab serve``: an OpenAI-compatible gateway that composes the input guard (:mod:`lmlab.moderation`), the
semantic cache (:mod:`lmlab.cache`), the router (:mod:`lmlab.routing`) and the LM backends (:mod:`lmlab.lm`).

    from lmlab.serve import GatewayConfig, create_app
    app = create_app(GatewayConfig.load("gateway.toml"))     # a FastAPI app; run it with uvicorn

Importing this package imports neither FastAPI nor any model; :func:`create_app` does. Docs: docs/serve.md.
"""

from __future__ import annotations

from typing import Any

from lmlab.serve.config import CONFIG_ENV, BackendConfig, GatewayConfig, hash_key

__all__ = ["BackendConfig", "CONFIG_ENV", "GatewayConfig", "create_app", "hash_key"]


def create_app(config: Any = None, **kwargs: Any) -> Any:
    """The gateway as a FastAPI app (see :func:`lmlab.serve.app.create_app`)."""
    from lmlab.serve.app import create_app as _create

    return _create(config, **kwargs)
