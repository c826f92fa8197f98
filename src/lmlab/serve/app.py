"""The FastAPI app: OpenAI-compatible endpoints over the gateway pipeline.

Per request (each stage switchable in the config): authentication and the key's rate limit -> body size and
JSON checks -> model resolution (a backend name, or the router alias) -> prompt-injection spotlighting of
untrusted content -> input guard -> semantic cache lookup -> router -> generation -> cache write. The response
says what happened in headers (``x-lmlab-cache``, ``x-lmlab-route``, ``x-lmlab-guard``, ``x-lmlab-injection``)
and in an extra JSON field ``lmlab``.

Blocking work (model decoding, the cache's SQLite and embedding, the guard's forward pass) runs in threads;
the event loop only awaits. ``create_app(config)`` builds an app; ``app_from_env()`` is the factory uvicorn
imports in each worker (``--factory``), reading the config file named by ``$LMLAB_GATEWAY_CONFIG``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import math
import secrets
import time
import weakref
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing, asynccontextmanager
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from lmlab.serve.backends import Backend, Generation, GenRequest, LocalBackend, content_text, make_backend, pieces
from lmlab.serve.config import GatewayConfig, KeyConfig, env_config_path
from lmlab.serve.errors import GatewayError, bad_request, overloaded, rate_limited, unknown_model
from lmlab.serve.metrics import get_metrics

log = logging.getLogger("lmlab.serve")
access_log = logging.getLogger("lmlab.serve.access")

ROLES = ("system", "developer", "user", "assistant", "tool", "function")
MAX_EMBED_INPUTS = 2048


# -- auth and rate limits ----------------------------------------------------------------------------------
class Slot:
    """One admitted request's place in ``Gateway.inflight``, released exactly once."""

    def __init__(self, gw: Any):
        self.gw, self.done = gw, False

    def release(self) -> None:
        if not self.done:
            self.done = True
            self.gw.release()


class Caller:
    def __init__(self, tenant: str, name: str):
        self.tenant, self.name = tenant, name


# -- the gateway ---------------------------------------------------------------------------------------------
class Gateway:
    def __init__(self, cfg: GatewayConfig, detector: Any = None, embedder: Any = None,
                 lms: dict[str, Any] | None = None, transports: dict[str, Any] | None = None):
        self.cfg = cfg
        self.metrics = get_metrics()
        self.state_dir = cfg.state_dir()
        self.backends: dict[str, Backend] = {}
        for b in cfg.backends:
            if b.kind == "local" and lms and b.name in lms:
                be: Backend = LocalBackend(b, lm=lms[b.name])
            elif b.kind == "upstream" and transports and b.name in transports:
                from lmlab.serve.backends import UpstreamBackend

                be = UpstreamBackend(b, transport=transports[b.name])
            else:
                be = make_backend(b)
            be.metrics = self.metrics
            self.backends[b.name] = be
        self._detector = detector
        self.embedder = embedder
        self.guard: Any = None
        self.cache: Any = None
        self.router: Any = None
        self.keys: dict[str, KeyConfig] = {k.digest: k for k in cfg.auth.keys}
        from lmlab.serve.ratelimit import LocalBuckets, open_buckets

        #: per-key token buckets: shared by the workers (SQLite) or the gateways on one Redis, else per process
        self.buckets = open_buckets(cfg) if any(self._rate(k) > 0 for k in cfg.auth.keys) else LocalBuckets()
        self._shared_buckets = not isinstance(self.buckets, LocalBuckets)
        self.inflight = 0
        self.hits: OrderedDict[str, tuple[str, int]] = OrderedDict()  # response id -> (tenant, cache entry) for reports
        self.ready = False

    # -- lifecycle -------------------------------------------------------------------------------------------
    async def start(self) -> None:
        t0 = time.perf_counter()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        for b in self.backends.values():
            await b.start()
        cfg = self.cfg
        if self.embedder is None and (cfg.cache.enabled or cfg.router.matrix):
            self.embedder = await asyncio.to_thread(load_cache_embedder, cfg.cache.embedder)
        if cfg.cache.enabled:
            from lmlab.cache import open_cache

            store: Any = cfg.cache.store if "://" in cfg.cache.store else (
                Path(cfg.cache.store).expanduser() if cfg.cache.store else self.state_dir / "cache")
            self.cache = await asyncio.to_thread(open_cache, self.embedder, store, cfg.cache.threshold,
                                                 ttl_s=cfg.cache.ttl_s, max_entries=cfg.cache.max_entries,
                                                 shared=True)
        if cfg.guard.enabled:
            from lmlab.serve.guard import build_guard

            lm = self._guard_lm()
            self.guard = await asyncio.to_thread(build_guard, cfg.guard, lm, self.state_dir, self._detector)
        from lmlab.serve.router import Router

        self.router = await asyncio.to_thread(Router, cfg.router, list(self.backends), self.embedder, self.state_dir)
        self.ready = True
        log.info("gateway ready in %.1f s: backends %s; guard %s; cache %s; router %s", time.perf_counter() - t0,
                 ", ".join(f"{n} ({b.kind})" for n, b in self.backends.items()),
                 "on" if self.guard is not None else "off",
                 "on" if self.cache is not None else "off", self.router.by)

    def _guard_lm(self) -> Any:
        name = self.cfg.guard.backend
        for n, b in self.backends.items():
            if isinstance(b, LocalBackend) and (not name or n == name):
                return b.lm
        return None

    async def close(self) -> None:
        for b in self.backends.values():
            try:
                await b.close()
            except Exception as e:  # noqa: BLE001 - shutting down: report and go on
                log.warning("backend %s: close failed: %s", b.name, e)
        if self.cache is not None:
            await asyncio.to_thread(self.cache.close)
        self.buckets.close()

    # -- per request -------------------------------------------------------------------------------------------
    def _rate(self, k: KeyConfig) -> float:
        return k.rps if k.rps is not None else self.cfg.limits.default_rps

    async def authenticate(self, request: Any) -> Caller:
        if not self.keys:
            return Caller("default", "")
        auth = request.headers.get("authorization", "")
        if not auth:
            raise GatewayError(401, "You didn't provide an API key. Send it as 'Authorization: Bearer KEY'.",
                               "invalid_request_error", None)
        scheme, _, key = auth.partition(" ")
        digest = hashlib.sha256(key.strip().encode("utf-8")).hexdigest()
        k = self.keys.get(digest) if scheme.lower() == "bearer" else None
        if k is None:
            raise GatewayError(401, "Incorrect API key provided.", "invalid_request_error", "invalid_api_key")
        rate = self._rate(k)
        if rate > 0:
            burst = k.burst if k.burst is not None else self.cfg.limits.default_burst
            if self._shared_buckets:  # a SQLite transaction or a Redis round trip: off the event loop
                wait = await asyncio.to_thread(self.buckets.take, digest, rate, burst)
            else:
                wait = self.buckets.take(digest, rate, burst)
            if wait > 0:
                self.metrics.shed.labels("rate_limit").inc()
                raise rate_limited(wait)
        return Caller(k.tenant, k.name or digest[:8])

    async def read_json(self, request: Any) -> dict[str, Any]:
        limit = self.cfg.server.max_body_bytes
        n = request.headers.get("content-length")
        if n is not None and n.isdigit() and int(n) > limit:
            raise GatewayError(413, f"Request body of {n} bytes is over the limit of {limit} bytes.",
                               "invalid_request_error", "request_too_large")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise GatewayError(413, f"Request body is over the limit of {limit} bytes.", "invalid_request_error",
                                   "request_too_large")
            chunks.append(chunk)
        try:
            body = json.loads(b"".join(chunks))
        except (ValueError, UnicodeDecodeError) as e:
            raise bad_request(f"We could not parse the JSON body of your request ({e}).", code="invalid_json") from None
        if not isinstance(body, dict):
            raise bad_request("The request body must be a JSON object.", code="invalid_json")
        return body

    def resolve(self, model: Any) -> tuple[list[str], bool]:
        """(backend names to try, whether routed) for the request's ``model``."""
        if not isinstance(model, str) or not model:
            raise bad_request("you must provide a model parameter", "model")
        if model == self.cfg.router.alias:
            return [], True
        if model in self.backends:
            return [model], False
        raise unknown_model(model, self.model_names())

    def model_names(self) -> list[str]:
        return [self.cfg.router.alias, *self.backends]

    def admit(self) -> None:
        if self.inflight >= self.cfg.limits.max_inflight:
            self.metrics.shed.labels("overload").inc()
            raise overloaded(f"The gateway has {self.inflight} requests in progress; retry later.",
                             self.cfg.limits.retry_after_s)
        self.inflight += 1
        self.metrics.inflight.inc()

    def release(self) -> None:
        self.inflight -= 1
        self.metrics.inflight.dec()

    # -- pipeline stages -------------------------------------------------------------------------------------
    def injection(self, req: GenRequest, meta: dict[str, Any]) -> None:
        icfg = self.cfg.injection
        if not icfg.enabled or not req.is_chat:
            meta["injection"] = "off"
            return
        from lmlab.moderation.injection import apply_injection_defence

        res = apply_injection_defence(req.messages or [], icfg)
        meta["injection"] = res.status
        if res.n_untrusted:
            self.metrics.injection.labels(res.status).inc()
            req.messages = res.messages
        if res.blocked:
            raise GatewayError(400, "The request carries untrusted content that looks like a prompt injection; it was "
                                    "refused by the gateway's injection policy.", "invalid_request_error",
                               "prompt_injection_detected", "messages")

    async def screen(self, text: str, meta: dict[str, Any]) -> bool:
        """Run the guard on the user's text; True when flagged."""
        if self.guard is None:
            meta["guard"] = "off"
            return False
        if not text.strip():
            meta["guard"] = "pass"
            return False
        t0 = time.perf_counter()
        flagged, p = await asyncio.to_thread(self.guard.check, text)
        self.metrics.stage.labels("guard").observe(time.perf_counter() - t0)
        meta["guard"] = "flagged" if flagged else "pass"
        meta["guard_score"] = round(p, 4)
        self.metrics.guard.labels(meta["guard"]).inc()
        return flagged

    def cache_target(self, req: GenRequest, model: str, endpoint: str, caller: Caller, opts: dict[str, Any]
                     ) -> tuple[str, Any] | None:
        """(prompt text, namespace) when this request may use the cache, else None."""
        if self.cache is None:
            return None
        want = opts.get("cache")
        if want is False:
            return None
        if req.temperature > 0 and not (want is True or self.cfg.cache.sampled):
            return None
        from lmlab.cache import Namespace

        if req.is_chat:
            msgs = req.messages_original or []
            system = "\n".join(content_text(m.get("content")) for m in msgs if m.get("role") in ("system", "developer"))
            rest = [m for m in msgs if m.get("role") not in ("system", "developer")]
            if len(rest) == 1 and rest[0].get("role") == "user":
                text = content_text(rest[0].get("content"))
            else:
                text = json.dumps([[m.get("role"), content_text(m.get("content"))] for m in rest], ensure_ascii=False)
        else:
            system, text = "", req.prompt or ""
        if not text.strip():
            return None
        params = {"endpoint": endpoint, "temperature": req.temperature, "top_p": req.top_p,
                  "max_tokens": req.max_tokens, "stop": sorted(req.stop),
                  "seed": req.seed if req.temperature > 0 else None,
                  "injection": self.cfg.injection.mode if self.cfg.injection.enabled else "off"}
        return text, Namespace(model=model, params=params, system_prompt=system, tenant=caller.tenant)

    async def cache_get(self, target: tuple[str, Any], meta: dict[str, Any]) -> Any:
        t0 = time.perf_counter()
        hit = await asyncio.to_thread(self.cache.get, *target)
        self.metrics.stage.labels("cache_get").observe(time.perf_counter() - t0)
        if hit is None:
            meta["cache"] = "miss"
            self.metrics.cache.labels("miss").inc()
            return None
        meta["cache"] = "hit"
        meta["cache_similarity"] = round(float(hit.similarity), 4)
        meta["cache_entry"] = int(hit.entry_id)
        self.metrics.cache.labels("hit_exact" if hit.exact else "hit_semantic").inc()
        return hit

    async def cache_put(self, target: tuple[str, Any], text: str, meta: dict[str, Any]) -> None:
        if not text.strip():
            return
        t0 = time.perf_counter()
        try:
            eid = await asyncio.to_thread(self.cache.put, target[0], text, target[1])
        except Exception as e:  # noqa: BLE001 - a failed write must not fail the answer
            log.warning("cache write failed: %s", e)
            return
        self.metrics.stage.labels("cache_put").observe(time.perf_counter() - t0)
        meta["cache"] = "stored"
        meta["cache_entry"] = int(eid)
        self.metrics.cache.labels("stored").inc()

    def plan(self, names: list[str], routed: bool, text: str) -> tuple[list[str], str]:
        if not routed:
            return names, "direct"
        return self.router.plan(text)

    async def generate(self, plan: list[str], by: str, req: GenRequest, meta: dict[str, Any]) -> Generation:
        """The whole answer from the first backend of ``plan`` that gives one (see :meth:`run_plan`)."""
        attempts = self.run_plan(plan, by, req, meta, stream=False)
        try:
            gen = await anext(attempts)
        finally:
            await attempts.aclose()
        assert isinstance(gen, Generation)
        return gen

    async def run_plan(self, plan: list[str], by: str, req: GenRequest, meta: dict[str, Any],
                       stream: bool) -> AsyncIterator[Generation | str]:
        """Try the backends of ``plan`` in order: a backend whose circuit is open is skipped (unless it is the
        last); after a server error (5xx, before any text was sent) a routed request passes on to the next one. A
        stream yields text pieces, otherwise one :class:`Generation`. The backend that answered is recorded in
        ``meta["route"]`` and the metrics."""
        last: GatewayError | None = None
        for i, name in enumerate(plan):
            b = self.backends[name]
            final = i == len(plan) - 1
            if not b.available() and not final:
                continue
            sent = False
            gen: Generation | None = None
            try:
                if stream:
                    async with aclosing(b.stream(req)) as pieces_:
                        async for piece in pieces_:
                            sent = True
                            yield piece
                else:
                    gen = await b.generate(req)
            except GatewayError as e:
                if not sent and by != "direct" and e.status >= 500 and not final:
                    last = e
                    continue
                raise
            how = by if i == 0 else "fallback"
            meta["route"] = f"{how}:{name}"
            self.metrics.routes.labels(name, how).inc()
            if gen is not None:
                self.metrics.tokens.labels(name).inc(gen.completion_tokens)
                yield gen
            return
        raise last or GatewayError(503, "no backend is available", "server_error", "no_backend")


# -- request parsing -----------------------------------------------------------------------------------------
def _num(body: dict[str, Any], name: str, default: float, lo: float, hi: float) -> float:
    v = body.get(name, default)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not lo <= v <= hi:
        raise bad_request(f"{v!r} is not valid for '{name}': expected a number in [{lo}, {hi}]", name)
    return float(v)


def _common(body: dict[str, Any], limits: Any) -> dict[str, Any]:
    mt = body.get("max_completion_tokens", body.get("max_tokens"))
    if mt is not None and (isinstance(mt, bool) or not isinstance(mt, int) or mt < 1):
        raise bad_request(f"{mt!r} is not valid for 'max_tokens': expected an integer >= 1", "max_tokens")
    if mt is not None and mt > limits.max_tokens:
        raise bad_request(f"max_tokens ({mt}) is over this gateway's limit of {limits.max_tokens}", "max_tokens")
    n = body.get("n", 1)
    if n not in (1, None):
        raise bad_request("this gateway returns one choice per request; n must be 1", "n")
    stop = body.get("stop") or []
    if isinstance(stop, str):
        stop = [stop]
    if not isinstance(stop, list) or len(stop) > 4 or not all(isinstance(s, str) for s in stop):
        raise bad_request("'stop' must be a string or a list of up to 4 strings", "stop")
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise bad_request("'seed' must be an integer", "seed")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise bad_request("'stream' must be true or false", "stream")
    opts = body.get("lmlab") or {}
    if not isinstance(opts, dict):
        raise bad_request("'lmlab' must be an object, e.g. {\"cache\": true}", "lmlab")
    return {"max_tokens": mt, "temperature": _num(body, "temperature", 1.0, 0.0, 2.0),
            "top_p": _num(body, "top_p", 1.0, 0.0, 1.0), "stop": stop, "seed": seed, "stream": stream, "opts": opts}


def parse_chat(body: dict[str, Any], limits: Any) -> tuple[GenRequest, bool, dict[str, Any]]:
    msgs = body.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise bad_request("'messages' must be a non-empty list of {role, content} objects", "messages")
    for i, m in enumerate(msgs):
        if not isinstance(m, dict) or m.get("role") not in ROLES:
            raise bad_request(f"messages[{i}]: each message needs a role ({', '.join(ROLES)})", f"messages[{i}].role")
        c = m.get("content")
        if c is not None and not isinstance(c, (str, list)):
            raise bad_request(f"messages[{i}].content must be a string or a list of content parts",
                              f"messages[{i}].content")
        if isinstance(c, list) and not all(isinstance(p, dict) for p in c):
            raise bad_request(f"messages[{i}].content: each part must be an object", f"messages[{i}].content")
    c = _common(body, limits)
    req = GenRequest(messages=[dict(m) for m in msgs], max_tokens=c["max_tokens"], temperature=c["temperature"],
                     top_p=c["top_p"], stop=c["stop"], seed=c["seed"], messages_original=[dict(m) for m in msgs])
    return req, c["stream"], c["opts"]


def parse_completion(body: dict[str, Any], limits: Any) -> tuple[GenRequest, bool, dict[str, Any]]:
    p = body.get("prompt")
    if isinstance(p, list) and len(p) == 1 and isinstance(p[0], str):
        p = p[0]
    if not isinstance(p, str):
        raise bad_request("'prompt' must be a string (one prompt per request)", "prompt")
    c = _common(body, limits)
    return (GenRequest(prompt=p, max_tokens=c["max_tokens"], temperature=c["temperature"], top_p=c["top_p"],
                       stop=c["stop"], seed=c["seed"]), c["stream"], c["opts"])


def user_text(req: GenRequest) -> str:
    """What the guard reads: the last user message (the new input), or the completion prompt."""
    if not req.is_chat:
        return req.prompt or ""
    users = [m for m in (req.messages_original or []) if m.get("role") == "user"]
    return content_text(users[-1].get("content")) if users else ""


def load_cache_embedder(spec: str) -> Any:
    from lmlab.cache import HashingEmbedder, load_st_embedder

    if spec == "hashing":
        return HashingEmbedder(256)
    return load_st_embedder(None if spec == "minilm" else spec)


# -- the app -----------------------------------------------------------------------------------------------
def input_texts(body: dict) -> list[str]:
    """The ``input`` field of an embeddings or moderations request as a list of strings (checked)."""
    inp = body.get("input")
    texts = [inp] if isinstance(inp, str) else inp
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise bad_request("'input' must be a string or a non-empty list of strings", "input")
    if len(texts) > MAX_EMBED_INPUTS:
        raise bad_request(f"at most {MAX_EMBED_INPUTS} inputs per request", "input")
    return texts


def create_app(config: GatewayConfig | str | Path | None = None, *, detector: Any = None, embedder: Any = None,
               lms: dict[str, Any] | None = None, transports: dict[str, Any] | None = None) -> Any:
    """The gateway as a FastAPI app. ``config``: a :class:`GatewayConfig`, a TOML/JSON path, or None (the file
    named by ``$LMLAB_GATEWAY_CONFIG``, else the defaults). Keyword arguments replace components (tests):
    ``detector`` (an object with ``score(texts)``), ``embedder`` (a cache embedder), ``lms`` (backend name ->
    loaded :class:`lmlab.lm.LM`), ``transports`` (backend name -> an httpx transport)."""
    if config is None:
        path = env_config_path()
        cfg = GatewayConfig.load(path) if path else GatewayConfig()
    elif isinstance(config, GatewayConfig):
        cfg = config
    else:
        cfg = GatewayConfig.load(config)
    configure_logging(cfg)
    gw = Gateway(cfg, detector=detector, embedder=embedder, lms=lms, transports=transports)

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        try:
            await gw.start()
        except Exception as e:  # noqa: BLE001 - one line that names the problem, then uvicorn exits
            log.error("error: the gateway could not start: %s: %s", type(e).__name__, str(e).splitlines()[0] if str(e) else "")
            await gw.close()
            raise
        try:
            yield
        finally:
            await gw.close()

    app = FastAPI(title="lmlab gateway", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.gateway = gw
    if cfg.server.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(cfg.server.cors_origins), allow_methods=["GET", "POST"],
                           allow_headers=["authorization", "content-type"],
                           expose_headers=["x-lmlab-cache", "x-lmlab-route", "x-lmlab-guard", "x-lmlab-injection"])
    m = gw.metrics

    def error_response(e: GatewayError) -> Any:
        return JSONResponse(e.body(), status_code=e.status, headers=e.headers)

    @app.exception_handler(GatewayError)
    async def _gateway_error(request: Request, e: GatewayError) -> Any:
        return error_response(e)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, e: StarletteHTTPException) -> Any:
        msg = f"Unknown request URL: {request.method} {request.url.path}." if e.status_code in (404, 405) else str(e.detail)
        return error_response(GatewayError(e.status_code, msg, "invalid_request_error",
                                           "unknown_url" if e.status_code == 404 else None))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, e: RequestValidationError) -> Any:
        return error_response(bad_request(f"invalid request: {str(e)[:300]}"))

    @app.exception_handler(Exception)
    async def _any_error(request: Request, e: Exception) -> Any:
        log.exception("unhandled error on %s", request.url.path)
        return error_response(GatewayError(500, "The gateway had an internal error; see its log.", "server_error",
                                           "internal_error"))

    def finish(endpoint: str, caller: Caller | None, status: int, t0: float, meta: dict[str, Any],
               extra: dict[str, Any] | Callable[[], dict[str, Any]] | None = None) -> None:
        """Count the request; write its access-log line (``extra``: fields, or a function that makes them, called
        only when the access log is on)."""
        m.requests.labels(endpoint, str(status), caller.tenant if caller else "-").inc()
        m.latency.labels(endpoint).observe(time.perf_counter() - t0)
        if cfg.logging.access:
            line = {"endpoint": endpoint, "status": status, "ms": round(1000 * (time.perf_counter() - t0), 2),
                    "tenant": caller.tenant if caller else None, "key": caller.name if caller else None,
                    **{k: v for k, v in meta.items() if k in ("cache", "route", "guard", "injection", "model")},
                    **((extra() if callable(extra) else extra) or {})}
            access_log.info(json.dumps(line, ensure_ascii=False))

    def headers_for(meta: dict[str, Any]) -> dict[str, str]:
        return {"x-lmlab-cache": str(meta.get("cache", "bypass")), "x-lmlab-route": str(meta.get("route", "")),
                "x-lmlab-guard": str(meta.get("guard", "off")), "x-lmlab-injection": str(meta.get("injection", "off"))}

    def log_extra(req: GenRequest, gen_text: str | None) -> dict[str, Any]:
        src = json.dumps(req.messages_original, ensure_ascii=False) if req.is_chat else (req.prompt or "")
        out: dict[str, Any] = {"prompt_chars": len(src), "prompt_sha256": hashlib.sha256(src.encode()).hexdigest()[:12]}
        if cfg.logging.prompts:
            out["prompt"] = src
            out["answer"] = gen_text
        return out

    async def completion_endpoint(request: Request, endpoint: str) -> Any:
        t0 = time.perf_counter()
        meta: dict[str, Any] = {"cache": "bypass", "guard": "off", "injection": "off"}
        caller: Caller | None = None
        admitted = False
        try:
            caller = await gw.authenticate(request)
            body = await gw.read_json(request)
            chat = endpoint == "chat"
            req, stream, opts = (parse_chat if chat else parse_completion)(body, cfg.limits)
            model = body.get("model")
            names, routed = gw.resolve(model)
            meta["model"] = model
            gw.admit()
            admitted = True
            text = user_text(req)
            gen: Generation | None = None
            target = None
            if cfg.server.role == "gateway":  # a model host only generates: its gateway workers ran the stages
                gw.injection(req, meta)
                if await gw.screen(text, meta):
                    gen = Generation(cfg.guard.refusal, "content_filter", 0, 0)
                    meta["route"] = "guard"
                target = gw.cache_target(req, model, endpoint, caller, opts) if gen is None else None
            if target is not None:
                hit = await gw.cache_get(target, meta)
                if hit is not None:
                    gen = Generation(hit.response, "stop", 0, 0)
                    meta["route"] = "cache"
            elif gen is None:
                m.cache.labels("bypass").inc()
            rid = ("chatcmpl-" if chat else "cmpl-") + secrets.token_hex(12)
            if meta.get("cache") == "hit":
                gw.hits[rid] = (caller.tenant, meta["cache_entry"])
                while len(gw.hits) > 10000:
                    gw.hits.popitem(last=False)
            plan, by = (None, None) if gen is not None else gw.plan(names, routed, text)
            if stream:
                if plan:
                    gw.backends[plan[0]].check(req)  # e.g. a prompt too long: a 400 now, not an error event later
                admitted = False  # the stream releases its own slot: when it ends, or when it is dropped unstarted
                slot = Slot(gw)
                events = sse(rid, model, chat, req, gen, plan, by, target, meta, caller, t0, slot)
                weakref.finalize(events, slot.release)
                return StreamingResponse(events, media_type="text/event-stream",
                                         headers={**headers_for(meta), "cache-control": "no-cache"})
            if gen is None:
                t1 = time.perf_counter()
                gen = await gw.generate(plan, by, req, meta)
                m.stage.labels("generate").observe(time.perf_counter() - t1)
                if target is not None and gen.finish_reason != "content_filter":
                    await gw.cache_put(target, gen.text, meta)
            payload = response_body(rid, model, chat, gen, meta)
            text_out = gen.text
            finish(endpoint, caller, 200, t0, meta, lambda: log_extra(req, text_out))
            return JSONResponse(payload, headers=headers_for(meta))
        except GatewayError as e:
            finish(endpoint, caller, e.status, t0, meta, {"error": e.code or e.type})
            return error_response(e)
        finally:
            if admitted:
                gw.release()

    def response_body(rid: str, model: str, chat: bool, gen: Generation, meta: dict[str, Any]) -> dict[str, Any]:
        usage = {"prompt_tokens": gen.prompt_tokens, "completion_tokens": gen.completion_tokens,
                 "total_tokens": gen.prompt_tokens + gen.completion_tokens}
        if chat:
            choice = {"index": 0, "message": {"role": "assistant", "content": gen.text, "refusal": None},
                      "logprobs": None, "finish_reason": gen.finish_reason}
            obj = "chat.completion"
        else:
            choice = {"index": 0, "text": gen.text, "logprobs": None, "finish_reason": gen.finish_reason}
            obj = "text_completion"
        return {"id": rid, "object": obj, "created": int(time.time()), "model": model, "choices": [choice],
                "usage": usage, "lmlab": dict(meta)}

    async def sse(rid: str, model: str, chat: bool, req: GenRequest, gen: Generation | None, plan: list[str] | None,
                  by: str | None, target: Any, meta: dict[str, Any], caller: Caller, t0: float,
                  slot: Slot) -> AsyncIterator[str]:
        created = int(time.time())
        status = 200
        parts: list[str] = []

        def chunk(piece: str | None, finish_reason: str | None = None, first: bool = False,
                  extra: dict[str, Any] | None = None) -> str:
            if chat:
                delta: dict[str, Any] = {}
                if first:
                    delta["role"] = "assistant"
                if piece is not None:
                    delta["content"] = piece
                choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
                obj = {"id": rid, "object": "chat.completion.chunk", "created": created, "model": model,
                       "choices": [choice]}
            else:
                obj = {"id": rid, "object": "text_completion", "created": created, "model": model,
                       "choices": [{"index": 0, "text": piece or "", "logprobs": None, "finish_reason": finish_reason}]}
            if extra:
                obj.update(extra)
            return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"

        try:
            first = True
            finish_reason = "stop"
            if gen is not None:
                for p in pieces(gen.text):
                    yield chunk(p, first=first)
                    first = False
                finish_reason = gen.finish_reason
            else:
                assert plan is not None and by is not None
                async with aclosing(gw.run_plan(plan, by, req, meta, stream=True)) as answer:
                    async for p in answer:
                        assert isinstance(p, str)
                        parts.append(p)
                        yield chunk(p, first=first)
                        first = False
                if target is not None:
                    await gw.cache_put(target, "".join(parts), meta)
            if first:
                yield chunk("", first=True)
            yield chunk(None, finish_reason, extra={"lmlab": dict(meta)})
            yield "data: [DONE]\n\n"
        except GatewayError as e:
            status = e.status
            yield e.sse()
        except Exception as e:  # noqa: BLE001 - the client gets an error event, not a cut connection
            log.exception("stream failed")
            status = 500
            yield GatewayError(500, f"The stream failed: {type(e).__name__}", "server_error", "internal_error").sse()
        finally:
            slot.release()
            finish("chat" if chat else "completions", caller, status, t0, meta,
                   lambda: {**log_extra(req, "".join(parts) if parts else (gen.text if gen else None)), "stream": True})

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Any:
        return await completion_endpoint(request, "chat")

    @app.post("/v1/completions")
    async def completions(request: Request) -> Any:
        return await completion_endpoint(request, "completions")

    @app.post("/v1/embeddings")
    async def embeddings(request: Request) -> Any:
        t0 = time.perf_counter()
        caller: Caller | None = None
        meta: dict[str, Any] = {}
        try:
            caller = await gw.authenticate(request)
            body = await gw.read_json(request)
            if gw.embedder is None:
                gw.embedder = await asyncio.to_thread(load_cache_embedder, cfg.cache.embedder)
            name = gw.embedder.name
            model = body.get("model")
            if model not in (name, cfg.router.alias):
                raise unknown_model(str(model), [name])
            texts = input_texts(body)
            fmt = body.get("encoding_format") or "float"
            if fmt not in ("float", "base64"):
                raise bad_request("'encoding_format' must be 'float' or 'base64'", "encoding_format")
            gw.admit()
            try:
                vecs = await asyncio.to_thread(gw.embedder.encode, texts)
            finally:
                gw.release()
            vecs = np.asarray(vecs, dtype=np.float32)
            data = [{"object": "embedding", "index": i,
                     "embedding": base64.b64encode(v.astype("<f4").tobytes()).decode() if fmt == "base64" else v.tolist()}
                    for i, v in enumerate(vecs)]
            n_tok = sum(len(t.split()) for t in texts)
            finish("embeddings", caller, 200, t0, meta, {"inputs": len(texts)})
            return JSONResponse({"object": "list", "data": data, "model": name,
                                 "usage": {"prompt_tokens": n_tok, "total_tokens": n_tok}})
        except GatewayError as e:
            finish("embeddings", caller, e.status, t0, meta, {"error": e.code or e.type})
            return error_response(e)

    @app.post("/v1/moderations")
    async def moderations(request: Request) -> Any:
        """The input guard as OpenAI's moderation endpoint: one category, ``toxic``, scored P(toxic)."""
        t0 = time.perf_counter()
        caller: Caller | None = None
        try:
            caller = await gw.authenticate(request)
            body = await gw.read_json(request)
            if gw.guard is None:
                raise GatewayError(404, "this gateway has no guard (guard.enabled = false)", "invalid_request_error",
                                   "no_guard")
            texts = input_texts(body)
            p = await asyncio.to_thread(gw.guard.scores, texts)
            thr = gw.guard.threshold
            results = [{"flagged": bool(x >= thr), "categories": {"toxic": bool(x >= thr)},
                        "category_scores": {"toxic": float(x)}} for x in p]
            for r_ in results:
                m.guard.labels("flagged" if r_["flagged"] else "pass").inc()
            finish("moderations", caller, 200, t0, {}, {"inputs": len(texts)})
            return JSONResponse({"id": "modr-" + secrets.token_hex(12), "model": "lmlab-guard", "results": results})
        except GatewayError as e:
            finish("moderations", caller, e.status, t0, {}, {"error": e.code or e.type})
            return error_response(e)

    @app.get("/v1/models")
    async def models(request: Request) -> Any:
        await gw.authenticate(request)
        ids = gw.model_names()
        if gw.embedder is not None:
            ids.append(gw.embedder.name)
        return {"object": "list", "data": [{"id": i, "object": "model", "created": 0, "owned_by": "lmlab"} for i in ids]}

    @app.post("/v1/lmlab/cache/wrong-hit")
    async def wrong_hit(request: Request) -> Any:
        """A client reports that a cached answer (by the response id that carried ``x-lmlab-cache: hit``) was wrong."""
        caller = await gw.authenticate(request)
        body = await gw.read_json(request)
        rec = gw.hits.get(str(body.get("id", "")))
        if rec is None or rec[0] != caller.tenant:
            raise GatewayError(404, "no cache hit with this response id is known to this worker", "invalid_request_error",
                               "unknown_response", "id")
        m.wrong_hits.inc()
        log.info(json.dumps({"event": "wrong_hit", "tenant": caller.tenant, "cache_entry": rec[1]}))
        return {"ok": True, "cache_entry": rec[1]}

    @app.get("/healthz")
    async def healthz() -> Any:
        backends = {n: b.health() for n, b in gw.backends.items()}
        ok = gw.ready and any(h.get("ok") for h in backends.values())
        return JSONResponse({"status": "ok" if ok else "degraded", "backends": backends, "inflight": gw.inflight,
                             "guard": gw.guard.info if gw.guard is not None else None,
                             "cache": {"threshold": cfg.cache.threshold, "embedder": getattr(gw.embedder, "name", None)}
                             if gw.cache is not None else None, "router": gw.router.by if gw.router else None},
                            status_code=200 if ok else 503)

    @app.get("/metrics")
    async def metrics() -> Any:
        data, ctype = m.render()
        return Response(data, media_type=ctype)

    return app


def app_from_env() -> Any:
    """The uvicorn factory: ``uvicorn --factory lmlab.serve.app:app_from_env`` with ``$LMLAB_GATEWAY_CONFIG``."""
    return create_app(None)


def configure_logging(cfg: GatewayConfig) -> None:
    lg = logging.getLogger("lmlab.serve")
    lg.setLevel(cfg.logging.level.upper())
    if not lg.handlers and not logging.getLogger().handlers:
        h = logging.StreamHandler()
        h.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        lg.addHandler(h)
