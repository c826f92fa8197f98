"""Where answers come from: the embedded/local model, an OpenAI-compatible upstream, or a fake.

Every backend is async and has the same two calls: ``generate(req) -> Generation`` and ``stream(req)`` (an async
iterator of text pieces). Errors are :class:`~lmlab.serve.errors.GatewayError` with the status the client gets.

- :class:`LocalBackend` loads a model with :func:`lmlab.lm.load_lm` and decodes through the engine's
  :class:`~lmlab.lm.engine.GenerationQueue` (continuous batching in one worker thread; its bounded
  ``max_pending`` turns overload into a 503 with Retry-After). The event loop only awaits the queue's futures.
  A local stream sends the text as the queue decodes it (a per-token hook of the queue).
- :class:`UpstreamBackend` calls ``/chat/completions`` and ``/completions`` of an OpenAI-compatible server with
  ``httpx`` (connect and read timeouts, a total deadline per request), retries connection errors and 5xx
  answers with exponential back-off (never 4xx, never after a stream has started), and a circuit breaker.
- :class:`FakeBackend` answers at once (echo or a canned reply): tests, and the gateway's own overhead.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from lmlab.serve.config import BackendConfig
from lmlab.serve.errors import GatewayError, context_length, overloaded, upstream

log = logging.getLogger("lmlab.serve")


@dataclass
class GenRequest:
    """One generation, already validated: a chat (``messages``) or a plain completion (``prompt``)."""

    messages: list[dict[str, Any]] | None = None
    prompt: str | None = None
    max_tokens: int | None = None
    temperature: float = 1.0
    top_p: float = 1.0
    stop: list[str] = field(default_factory=list)
    seed: int | None = None
    #: the messages as the client sent them (before spotlighting): what the guard and the cache key read
    messages_original: list[dict[str, Any]] | None = None

    @property
    def is_chat(self) -> bool:
        return self.messages is not None


@dataclass
class Generation:
    text: str
    finish_reason: str = "stop"
    prompt_tokens: int = 0
    completion_tokens: int = 0


def content_text(content: Any) -> str:
    """The text of an OpenAI message content (a string, or a list of parts whose text parts are joined)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type", "text") == "text")


def plain_messages(messages: list[dict[str, Any]]) -> list[dict[str, str]]:
    return [{"role": str(m.get("role", "user")), "content": content_text(m.get("content"))} for m in messages]


def _words(text: str) -> int:
    return len(text.split())


def pieces(text: str, size: int = 16) -> list[str]:
    """``text`` cut into chunks of about ``size`` characters at spaces (how a finished answer is streamed)."""
    out, cur = [], ""
    for w in text.split(" "):
        cur = f"{cur} {w}" if cur else w
        if len(cur) >= size:
            out.append(cur + " ")
            cur = ""
    if cur:
        out.append(cur)
    if out and not text.endswith(" ") and out[-1].endswith(" "):
        out[-1] = out[-1][:-1]
    return out or [""]


class Backend:
    kind = "backend"

    def __init__(self, cfg: BackendConfig):
        self.cfg = cfg
        self.name = cfg.name
        self.metrics: Any = None

    async def start(self) -> None:
        """Load models / open connections (called once, from the app's startup)."""

    async def close(self) -> None:
        """Release what start() took."""

    async def generate(self, req: GenRequest) -> Generation:
        raise NotImplementedError

    async def stream(self, req: GenRequest) -> AsyncIterator[str]:
        gen = await self.generate(req)
        for p in pieces(gen.text):
            yield p

    def available(self) -> bool:
        """False while the backend refuses work without trying (an open circuit)."""
        return True

    def check(self, req: GenRequest) -> None:
        """Raise the client's error now for a request this backend can never answer (a stream checks before its
        200 is sent)."""

    def health(self) -> dict[str, Any]:
        return {"kind": self.kind, "ok": True}

    def max_tokens(self, req: GenRequest) -> int:
        return req.max_tokens if req.max_tokens is not None else self.cfg.default_max_tokens


# -- fake --------------------------------------------------------------------------------------------------
class FakeBackend(Backend):
    """Answers at once: ``cfg.reply``, or ``echo: <last user message>`` when ``reply`` is empty."""

    kind = "fake"

    async def generate(self, req: GenRequest) -> Generation:
        if self.cfg.delay_s:
            await asyncio.sleep(self.cfg.delay_s)
        if req.is_chat:
            users = [content_text(m.get("content")) for m in req.messages or [] if m.get("role") == "user"]
            src = users[-1] if users else ""
            n_prompt = sum(_words(content_text(m.get("content"))) for m in req.messages or [])
        else:
            src = req.prompt or ""
            n_prompt = _words(src)
        text = self.cfg.reply or f"echo: {src}"
        words = text.split(" ")
        limit = self.max_tokens(req)
        finish = "stop"
        if len(words) > limit:
            text, finish = " ".join(words[:limit]), "length"
        return Generation(text, finish, n_prompt, min(len(words), limit))


# -- local -------------------------------------------------------------------------------------------------
class LocalBackend(Backend):
    """A model in this process (:func:`lmlab.lm.load_lm` spec), decoded by the engine's batching queue."""

    kind = "local"

    def __init__(self, cfg: BackendConfig, lm: Any = None):
        super().__init__(cfg)
        self.lm = lm
        self.queue: Any = None
        self._pending = 0
        self._fallback_lock: asyncio.Semaphore | None = None

    async def start(self) -> None:
        if self.lm is None:
            from lmlab.lm import load_lm

            t0 = time.perf_counter()
            log.info("backend %s: loading %s on %s", self.name, self.cfg.model, self.cfg.device)
            self.lm = await asyncio.to_thread(load_lm, self.cfg.model, device=self.cfg.device, needs=("logits",))
            log.info("backend %s: loaded in %.1f s", self.name, time.perf_counter() - t0)
        eng = self.lm.engine() if hasattr(self.lm, "engine") else None
        if eng is not None:
            # prompt KV reuse off: a request whose prompt another tenant sent recently would get its first token
            # sooner (a timing side channel across tenants, as with shared prefix caches); the gateway's own
            # response cache is namespaced by tenant instead
            self.queue = eng.queue(max_batch=self.cfg.max_batch, max_pending=self.cfg.max_pending,
                                   max_len=self.cfg.max_len, reuse=False).start()
        else:
            # no engine for this architecture: lm.generate one request at a time, in a worker thread
            log.info("backend %s: no batching engine for this model; requests are decoded one at a time", self.name)
            self._fallback_lock = asyncio.Semaphore(1)

    async def close(self) -> None:
        if self.queue is not None:
            await asyncio.to_thread(self.queue.close, True)

    def health(self) -> dict[str, Any]:
        out = {"kind": self.kind, "ok": self.lm is not None, "model": str(getattr(self.lm, "name", self.cfg.model)),
               "pending": self._pending}
        if self.queue is not None:
            out["queue"] = dict(self.queue.stats)
        return out

    def encode(self, text: str) -> list[int]:
        from lmlab.lm.protocols import WeightsLM

        return list(self.lm.encode(text)) if isinstance(self.lm, WeightsLM) else self.lm.tokenizer(text)["input_ids"]

    def prompt_text(self, req: GenRequest) -> str:
        if req.is_chat:
            return self.lm.chat_prompt(plain_messages(req.messages or []))
        return req.prompt or ""

    def check(self, req: GenRequest) -> None:
        self.prepare(req)

    def prepare(self, req: GenRequest) -> tuple[list[int], int]:
        """Token ids of the prompt and max new tokens; 400 context_length_exceeded when they do not fit."""
        ids = self.encode(self.prompt_text(req))
        n_new = self.max_tokens(req)
        if len(ids) + n_new + 1 > self.cfg.max_len or not ids:
            if not ids:
                raise GatewayError(400, "the prompt is empty", "invalid_request_error", None,
                                   "messages" if req.is_chat else "prompt")
            raise context_length(len(ids), n_new, self.cfg.max_len - 1, "messages" if req.is_chat else "prompt")
        return ids, n_new

    def _count(self, text: str) -> int:
        tok = self.lm.tokenizer
        try:
            return len(tok(text, add_special_tokens=False)["input_ids"]) if text else 0
        except Exception:  # noqa: BLE001 - a count for the usage field only
            return _words(text)

    def _submit(self, ids: list[int], n_new: int, req: GenRequest, on_token: Any = None) -> Any:
        from lmlab.lm.engine import QueueFull

        try:
            return self.queue.submit(ids, max_new_tokens=n_new, temperature=req.temperature, top_p=req.top_p,
                                     stop=[s for s in req.stop if s], seed=req.seed, on_token=on_token)
        except QueueFull:
            if self.metrics is not None:
                self.metrics.shed.labels("queue_full").inc()
            raise overloaded(f"the model {self.name} has {self.cfg.max_pending} requests waiting; retry later",
                             retry_after_s=1.0) from None

    def _enter(self) -> None:
        self._pending += 1
        if self.metrics is not None:
            self.metrics.queue.labels(self.name).inc()

    def _leave(self) -> None:
        self._pending -= 1
        if self.metrics is not None:
            self.metrics.queue.labels(self.name).dec()

    def _timeout(self) -> GatewayError:
        return upstream(f"the model {self.name} did not answer within {self.cfg.timeout_s} s", 504, "timeout")

    async def generate(self, req: GenRequest) -> Generation:
        ids, n_new = self.prepare(req)
        self._enter()
        try:
            if self.queue is not None:
                fut = self._submit(ids, n_new, req)
                try:
                    text = await asyncio.wait_for(asyncio.wrap_future(fut), timeout=self.cfg.timeout_s)
                except asyncio.TimeoutError:
                    fut.cancel()
                    raise self._timeout() from None
            else:
                assert self._fallback_lock is not None
                if self._pending > self.cfg.max_pending + 1:
                    raise overloaded(f"the model {self.name} is busy; retry later", retry_after_s=1.0)
                async with self._fallback_lock:
                    prompt = self.prompt_text(req)
                    text = (await asyncio.to_thread(self.lm.generate, [prompt], n_new, req.temperature, req.top_p,
                                                    req.seed, [s for s in req.stop if s]))[0]
        finally:
            self._leave()
        n_out = self._count(text)
        return Generation(text, "length" if n_out >= n_new else "stop", len(ids), n_out)

    async def stream(self, req: GenRequest) -> AsyncIterator[str]:
        """Text as the queue decodes it, token by token. Text that could still turn out to be the start of a stop
        string is held back until it cannot; the pieces always add up to what :meth:`generate` returns."""
        if self.queue is None:
            async for p in super().stream(req):
                yield p
            return
        from lmlab.lm.base import cut_at_stop

        ids, n_new = self.prepare(req)
        stop = [s for s in req.stop if s]
        hold = max((len(s) for s in stop), default=0)
        loop = asyncio.get_running_loop()
        q: asyncio.Queue = asyncio.Queue()
        self._enter()
        fut = None
        try:
            fut = self._submit(ids, n_new, req, on_token=lambda t: loop.call_soon_threadsafe(q.put_nowait, t))
            fut.add_done_callback(lambda f: loop.call_soon_threadsafe(q.put_nowait, None))
            deadline = loop.time() + self.cfg.timeout_s
            toks: list[int] = []
            sent = ""
            tok = self.lm.tokenizer
            while True:
                try:
                    item = await asyncio.wait_for(q.get(), timeout=max(0.0, deadline - loop.time()))
                except asyncio.TimeoutError:
                    fut.cancel()
                    raise self._timeout() from None
                if item is None:
                    break
                toks.append(item)
                text = tok.decode(toks, skip_special_tokens=True)
                if text.endswith("\ufffd"):  # an incomplete multi-byte character: wait for the next token
                    continue
                safe = cut_at_stop(text, stop)
                safe = safe[: max(0, len(safe) - hold)] if hold and safe == text else safe
                if len(safe) > len(sent) and safe.startswith(sent):
                    yield safe[len(sent):]
                    sent = safe
            final = fut.result()
            if final.startswith(sent):
                if len(final) > len(sent):
                    yield final[len(sent):]
            else:  # decoding a prefix differed from decoding the whole (rare tokenizer merges): say so in the log
                log.warning("backend %s: streamed text diverged from the final text; the stream may differ", self.name)
        finally:
            if fut is not None and not fut.done():
                fut.cancel()  # the client went away: a request still waiting for a slot is dropped
            self._leave()


# -- upstream ----------------------------------------------------------------------------------------------
class CircuitBreaker:
    """Closed -> open after ``failures`` consecutive failures -> half-open after ``cooldown_s`` (one trial
    request) -> closed on its success, open again on its failure."""

    def __init__(self, failures: int, cooldown_s: float, clock: Any = time.monotonic):
        self.threshold, self.cooldown_s, self.clock = failures, cooldown_s, clock
        self.failures = 0
        self.state = "closed"
        self.opened_at = 0.0
        self._trial = False

    def allow(self) -> bool:
        if self.state == "closed":
            return True
        if self.state == "open" and self.clock() - self.opened_at >= self.cooldown_s:
            self.state, self._trial = "half_open", False
        if self.state == "half_open" and not self._trial:
            self._trial = True
            return True
        return False

    def retry_after(self) -> float:
        return max(0.0, self.cooldown_s - (self.clock() - self.opened_at)) if self.state == "open" else 1.0

    def success(self) -> None:
        self.failures, self.state, self._trial = 0, "closed", False

    def failure(self) -> None:
        self.failures += 1
        if self.state == "half_open" or self.failures >= self.threshold:
            self.state, self.opened_at, self._trial = "open", self.clock(), False


class _Retryable(Exception):
    def __init__(self, reason: str, error: GatewayError):
        super().__init__(reason)
        self.reason, self.error = reason, error


class UpstreamBackend(Backend):
    kind = "upstream"

    def __init__(self, cfg: BackendConfig, transport: Any = None):
        super().__init__(cfg)
        self.breaker = CircuitBreaker(cfg.breaker_failures, cfg.breaker_cooldown_s)
        self.transport: Any = None
        self._transport = transport
        self._urls: dict[str, Any] = {}
        self._headers: list[tuple[bytes, bytes]] = []
        self._ext: dict[str, Any] = {}

    async def start(self) -> None:
        import os

        import httpx

        headers = [(b"content-type", b"application/json"), (b"accept", b"*/*"), (b"user-agent", b"lmlab-serve")]
        if self.cfg.api_key_env:
            key = os.environ.get(self.cfg.api_key_env)
            if key:
                headers.append((b"authorization", f"Bearer {key}".encode()))
        self._headers = headers
        timeout = httpx.Timeout(connect=self.cfg.connect_timeout_s, read=self.cfg.read_timeout_s,
                                write=self.cfg.read_timeout_s, pool=self.cfg.connect_timeout_s)
        self._ext = {"timeout": timeout.as_dict()}
        base = self.cfg.url.rstrip("/") + "/"
        self._urls = {r: httpx.URL(base + r) for r in ("chat/completions", "completions")}
        if self._transport is not None:
            self.transport = self._transport
        else:
            from lmlab.serve.netio import upstream_transport

            self.transport = upstream_transport(base, httpx.Limits(max_connections=256, max_keepalive_connections=64))

    async def close(self) -> None:
        if self.transport is not None:
            await self.transport.aclose()

    async def _send(self, route: str, body: dict[str, Any]) -> Any:
        """POST ``body`` as JSON through the transport; the response's body is not read yet (close it)."""
        import httpx

        content = json.dumps(body, ensure_ascii=False).encode("utf-8")
        req = httpx.Request("POST", self._urls[route], headers=self._headers, content=content, extensions=self._ext)
        return await self.transport.handle_async_request(req)

    def available(self) -> bool:
        return self.breaker.state != "open" or self.breaker.clock() - self.breaker.opened_at >= self.breaker.cooldown_s

    def health(self) -> dict[str, Any]:
        return {"kind": self.kind, "ok": self.breaker.state != "open", "circuit": self.breaker.state,
                "consecutive_failures": self.breaker.failures}

    def _payload(self, req: GenRequest, stream: bool) -> tuple[str, dict[str, Any]]:
        body: dict[str, Any] = {"model": self.cfg.model, "temperature": req.temperature, "top_p": req.top_p,
                                "max_tokens": self.max_tokens(req)}
        if req.stop:
            body["stop"] = req.stop
        if req.seed is not None:
            body["seed"] = req.seed
        if stream:
            body["stream"] = True
        if req.is_chat:
            body["messages"] = req.messages
            return "chat/completions", body
        body["prompt"] = req.prompt
        return "completions", body

    def _note(self, ok: bool, reason: str = "") -> None:
        was = self.breaker.state
        if ok:
            self.breaker.success()
        else:
            self.breaker.failure()
            if self.metrics is not None:
                self.metrics.upstream_failures.labels(self.name, reason).inc()
        if self.metrics is not None and was != self.breaker.state:
            self.metrics.circuit.labels(self.name).set(1 if self.breaker.state == "open" else 0)
        if was != self.breaker.state:
            log.warning("backend %s: circuit %s -> %s", self.name, was, self.breaker.state)

    def _check_open(self) -> None:
        if not self.breaker.allow():
            raise upstream(f"backend {self.name} is unavailable (circuit open after {self.breaker.failures} consecutive "
                           "failures); retry later", 503, "upstream_unavailable",
                           {"Retry-After": str(max(1, int(self.breaker.retry_after() + 0.999)))})

    @staticmethod
    def _status_error(status: int, text: str, name: str, retry_after: str | None = None) -> GatewayError:
        """A 4xx from upstream passes through (its OpenAI error body when it has one, and its Retry-After); so does
        a 503 that says the upstream is overloaded (it sheds load: not retried, not a circuit-breaker failure);
        other 5xx become 502."""
        try:
            err = json.loads(text).get("error") or {}
        except (ValueError, AttributeError):
            err = {}
        headers = {"Retry-After": retry_after} if retry_after else None
        if 400 <= status < 500 or (status == 503 and err.get("code") == "server_overloaded"):
            return GatewayError(status, str(err.get("message") or f"upstream {name} answered HTTP {status}"),
                                str(err.get("type") or "invalid_request_error"), err.get("code"), err.get("param"),
                                headers=headers)
        return upstream(f"upstream {name} answered HTTP {status}", 502, "upstream_error")

    @staticmethod
    def _overloaded(status: int, text: str) -> bool:
        return status == 503 and '"server_overloaded"' in text

    async def _attempts(self, fn: Any) -> Any:
        """Run ``fn()`` with retries and back-off inside the total deadline; feeds the circuit breaker."""
        self._check_open()
        deadline = time.monotonic() + self.cfg.timeout_s
        delay = self.cfg.backoff_s
        last: GatewayError | None = None
        for attempt in range(self.cfg.retries + 1):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                async with asyncio.timeout(left):  # no extra task per attempt, unlike asyncio.wait_for
                    out = await fn()
                self._note(True)
                return out
            except _Retryable as e:
                self._note(False, e.reason)
                last = e.error
            except TimeoutError:
                self._note(False, "timeout")
                last = upstream(f"upstream {self.name} did not answer within {self.cfg.timeout_s} s", 504, "timeout")
                break
            except GatewayError:
                self._note(True)  # the upstream answered (a 4xx): it is alive
                raise
            if attempt < self.cfg.retries:
                if not self.breaker.allow():
                    break
                await asyncio.sleep(min(delay, max(0.0, deadline - time.monotonic())))
                delay *= 2
        if last is None:
            last = upstream(f"upstream {self.name} did not answer within {self.cfg.timeout_s} s", 504, "timeout")
        raise last

    def _transport_error(self, e: Exception) -> _Retryable:
        import httpx

        if isinstance(e, httpx.TimeoutException):
            return _Retryable("timeout", upstream(f"upstream {self.name} timed out ({type(e).__name__})", 504, "timeout"))
        return _Retryable("connection", upstream(f"cannot reach upstream {self.name} ({type(e).__name__})", 502,
                                                 "upstream_unreachable"))

    async def generate(self, req: GenRequest) -> Generation:
        import httpx

        route, body = self._payload(req, stream=False)

        async def once() -> Generation:
            try:
                r = await self._send(route, body)
                try:
                    await r.aread()
                finally:
                    await r.aclose()
            except httpx.HTTPError as e:
                raise self._transport_error(e) from None
            if r.status_code >= 500 and not self._overloaded(r.status_code, r.text):
                raise _Retryable(f"http_{r.status_code}", self._status_error(r.status_code, r.text, self.name))
            if r.status_code >= 400:
                raise self._status_error(r.status_code, r.text, self.name, r.headers.get("retry-after"))
            try:
                data = r.json()
                choice = data["choices"][0]
                text = choice["message"]["content"] if req.is_chat else choice["text"]
                usage = data.get("usage") or {}
            except (ValueError, KeyError, IndexError, TypeError):
                raise _Retryable("bad_body", upstream(f"upstream {self.name} answered without an OpenAI-style body",
                                                      502, "upstream_bad_response")) from None
            return Generation(text or "", choice.get("finish_reason") or "stop", int(usage.get("prompt_tokens") or 0),
                              int(usage.get("completion_tokens") or 0))

        return await self._attempts(once)

    async def stream(self, req: GenRequest) -> AsyncIterator[str]:
        """Text pieces of the upstream's stream. Retried only until the first piece; a stream that breaks later
        ends with a GatewayError (the app turns it into an error event)."""
        import httpx

        route, body = self._payload(req, stream=True)
        self._check_open()
        deadline = time.monotonic() + self.cfg.timeout_s
        delay = self.cfg.backoff_s
        for attempt in range(self.cfg.retries + 1):
            started = False
            try:
                async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                    r = await self._send(route, body)
                    try:
                        if r.status_code >= 400:
                            text = (await r.aread()).decode("utf-8", "replace")
                            if r.status_code < 500 or self._overloaded(r.status_code, text):
                                self._note(True)
                                raise self._status_error(r.status_code, text, self.name, r.headers.get("retry-after"))
                            raise _Retryable(f"http_{r.status_code}", self._status_error(r.status_code, text, self.name))
                        async for line in r.aiter_lines():
                            if not line.startswith("data:"):
                                continue
                            data = line[5:].strip()
                            if data == "[DONE]":
                                self._note(True)
                                return
                            try:
                                obj = json.loads(data)
                            except ValueError:
                                continue
                            if obj.get("error"):
                                raise self._status_error(502, json.dumps(obj), self.name)
                            ch = (obj.get("choices") or [{}])[0]
                            piece = (ch.get("delta") or {}).get("content") if req.is_chat else ch.get("text")
                            if piece:
                                started = True
                                yield piece
                        # the body ended without [DONE]: the upstream dropped the stream
                        raise _Retryable("dropped", upstream(f"upstream {self.name} closed the stream before it "
                                                             "finished", 502, "upstream_stream_dropped"))
                    finally:
                        await r.aclose()
            except TimeoutError:
                self._note(False, "timeout")
                raise upstream(f"upstream {self.name} did not finish within {self.cfg.timeout_s} s", 504,
                               "timeout") from None
            except httpx.HTTPError as e:
                err = self._transport_error(e)
                if started:
                    self._note(False, "dropped")
                    raise upstream(f"upstream {self.name} broke the stream ({type(e).__name__})", 502,
                                   "upstream_stream_dropped") from None
                self._note(False, err.reason)
                last = err.error
            except _Retryable as e:
                self._note(False, e.reason)
                if started:
                    raise e.error from None
                last = e.error
            if attempt < self.cfg.retries and self.breaker.allow():
                await asyncio.sleep(min(delay, max(0.0, deadline - time.monotonic())))
                delay *= 2
            else:
                raise last


def make_backend(cfg: BackendConfig) -> Backend:
    return {"local": LocalBackend, "upstream": UpstreamBackend, "fake": FakeBackend}[cfg.kind](cfg)
