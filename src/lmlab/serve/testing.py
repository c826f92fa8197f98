"""Run an ASGI app on 127.0.0.1 in a background thread (tests, benchmarks, examples).

    with serve_in_thread(create_app(cfg)) as base_url:          # e.g. "http://127.0.0.1:53211"
        openai.OpenAI(base_url=base_url + "/v1", api_key="k", max_retries=0).models.list()
"""

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class KeywordDetector:
    """A stand-in guard detector: P(toxic) = 1 when a text contains one of ``words`` (case-insensitive), else 0.
    Configure it as ``guard.detector = "lmlab.serve.testing:KeywordDetector"`` (default word: "forbidden")."""

    threshold = 0.5

    def __init__(self, words: tuple[str, ...] = ("forbidden",)):
        self.words = tuple(w.lower() for w in words)

    def score(self, texts: Any) -> Any:
        import numpy as np

        return np.array([1.0 if any(w in t.lower() for w in self.words) else 0.0 for t in texts])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serve_in_thread(app: Any, port: int | None = None, startup_timeout_s: float = 120.0,
                    log_level: str = "warning") -> Iterator[str]:
    """Start uvicorn with ``app`` on a free loopback port; yields the base URL; stops it on exit."""
    import uvicorn

    port = port or free_port()
    from lmlab.serve.netio import CoalescingHttpProtocol

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level=log_level, access_log=False,
                                           lifespan="on", timeout_graceful_shutdown=2, http=CoalescingHttpProtocol))
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    t0 = time.monotonic()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError(f"the server on port {port} did not start (see the log above)")
        if time.monotonic() - t0 > startup_timeout_s:
            server.should_exit = True
            raise RuntimeError(f"the server on port {port} did not start within {startup_timeout_s} s")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)


def fake_upstream_app(hang_s: float = 30.0) -> Any:
    """A tiny OpenAI-compatible upstream whose behaviour is chosen by the request's ``model``:

    ``ok`` (answers ``upstream: <last message content as received>``), ``fail500`` (HTTP 500), ``hang`` (sleeps
    ``hang_s`` before answering), ``drop`` (a stream that stops after two chunks without ``[DONE]``), ``bad400``
    (an OpenAI-style 400). ``app.state.calls`` counts requests per model.
    """
    import asyncio
    import json as _json

    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse, StreamingResponse

    app = FastAPI()
    app.state.calls = {}

    def answer(body: dict[str, Any], chat: bool) -> str:
        if chat:
            last = body["messages"][-1].get("content")
            last = last if isinstance(last, str) else _json.dumps(last)
        else:
            last = body.get("prompt", "")
        return f"upstream: {last}"

    async def handle(request: Request, chat: bool) -> Any:
        body = await request.json()
        model = body.get("model", "")
        app.state.calls[model] = app.state.calls.get(model, 0) + 1
        if model == "fail500":
            return JSONResponse({"error": {"message": "boom", "type": "server_error"}}, status_code=500)
        if model == "bad400":
            return JSONResponse({"error": {"message": "bad thing", "type": "invalid_request_error", "param": "x",
                                           "code": "bad"}}, status_code=400)
        if model == "hang":
            await asyncio.sleep(hang_s)
        text = answer(body, chat)
        if body.get("stream"):
            async def gen() -> Any:
                words = text.split(" ")
                for i, w in enumerate(words):
                    piece = w if i == 0 else " " + w
                    ch = ({"choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]} if chat
                          else {"choices": [{"index": 0, "text": piece, "finish_reason": None}]})
                    yield f"data: {_json.dumps(ch)}\n\n"
                    if model == "drop" and i == 1:
                        return  # the connection ends without [DONE]
                    await asyncio.sleep(0)
                yield "data: [DONE]\n\n"

            return StreamingResponse(gen(), media_type="text/event-stream")
        choice = ({"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"} if chat
                  else {"index": 0, "text": text, "finish_reason": "stop"})
        return {"id": "x", "object": "chat.completion" if chat else "text_completion", "created": 0, "model": model,
                "choices": [choice], "usage": {"prompt_tokens": 3, "completion_tokens": len(text.split()),
                                               "total_tokens": 3 + len(text.split())}}

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Any:
        return await handle(request, True)

    @app.post("/v1/completions")
    async def completions(request: Request) -> Any:
        return await handle(request, False)

    return app
