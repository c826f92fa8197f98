"""Targets the harness attacks: the embedded model, a local model, one OpenAI-compatible URL, a gateway process.

================================  ================================================================================
spec                              target
================================  ================================================================================
``default`` (the default)         the embedded SmolLM2-135M-Instruct through :func:`lmlab.lm.load_lm` (batched
                                  decoding with ``lm.engine()``); nothing leaves the process
a local path                      an HF directory or a GGUF file, as :func:`lmlab.lm.load_lm` reads it
``http(s)://host:port/v1#model``  one OpenAI-compatible endpoint through the official ``openai`` client
                                  (``max_retries=0``); every request of the run goes to this URL and nowhere else
================================  ================================================================================

:class:`GatewayProcess` starts ``lmlab serve --config FILE --host 127.0.0.1 --port N`` as a subprocess on a
free local port and gives its URL, so a gateway is attacked over HTTP like any endpoint (the harness never
imports the gateway's code). An HTTP 4xx answer (a guard refusing the request) is a *blocked* reply.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lmlab.config import ConfigError


@dataclass
class Reply:
    text: str
    blocked: bool = False  # refused by the endpoint (HTTP 4xx) or blocked by a harness output check
    latency_s: float = 0.0
    error: str = ""


class Target:
    name = "target"
    local = True
    #: send retrieved text as a separate content part marked ``"untrusted": true`` (for a gateway's injection
    #: defence) instead of inside the user text; requests are then ``(system, user, untrusted_text)``
    untrusted_parts = False

    def chat(self, requests: Sequence[tuple[str, ...]], max_new_tokens: int = 48, temperature: float = 0.0,
             seed: int | None = None) -> list[Reply]:
        """One reply per ``(system, user)`` request (``(system, user, untrusted_text)`` with ``untrusted_parts``)."""
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "local": self.local}


class LMTarget(Target):
    """An :class:`lmlab.lm.LM` (text capability): chat template applied here, greedy by default, batched."""

    def __init__(self, lm: Any, name: str = "", batch_size: int = 8):
        self.lm = lm
        self.name = name or f"lm:{getattr(lm, 'name', 'lm')}"
        self.batch_size = batch_size
        #: greedy replies by (prompt, max_new_tokens): a request repeated under another defence is decoded once
        self.memo: dict[tuple[str, int], str] = {}

    def chat(self, requests: Sequence[tuple[str, ...]], max_new_tokens: int = 48, temperature: float = 0.0,
             seed: int | None = None) -> list[Reply]:
        prompts = [self.lm.chat_prompt(req[1], system=req[0] or None) for req in requests]
        greedy = temperature == 0
        todo = [p for p in dict.fromkeys(prompts) if not (greedy and (p, max_new_tokens) in self.memo)]
        fresh: dict[str, Reply] = {}
        for i in range(0, len(todo), self.batch_size):
            chunk = todo[i:i + self.batch_size]
            t0 = time.perf_counter()
            texts = self.lm.generate(chunk, max_new_tokens=max_new_tokens, temperature=temperature, seed=seed)
            dt = (time.perf_counter() - t0) / max(1, len(chunk))
            for p, t in zip(chunk, texts):
                fresh[p] = Reply(t, latency_s=dt)
                if greedy:
                    self.memo[(p, max_new_tokens)] = t
        return [fresh[p] if p in fresh else Reply(self.memo[(p, max_new_tokens)]) for p in prompts]


class OpenAITarget(Target):
    """One OpenAI-compatible ``/v1`` endpoint (``/chat/completions``), through the official ``openai`` client."""

    local = False

    def __init__(self, base_url: str, model: str = "default", api_key: str | None = None, timeout: float = 120.0,
                 untrusted_parts: bool = False):
        if not base_url.startswith(("http://", "https://")):
            raise ConfigError(f"target: {base_url!r} is not an http(s) URL; use e.g. http://127.0.0.1:8000/v1")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key = api_key
        self.timeout = timeout
        self.untrusted_parts = untrusted_parts
        self.name = f"{model}@{self.base_url}"
        self.local = self.base_url.split("//", 1)[1].split("/")[0].split(":")[0] in ("127.0.0.1", "localhost", "[::1]")
        self._client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            import openai

            # one client, one base URL: the harness sends nothing anywhere else; no retries (a refusal is data)
            self._client = openai.OpenAI(base_url=self.base_url, api_key=self.api_key or "unused",
                                         timeout=self.timeout, max_retries=0)
        return self._client

    def chat(self, requests: Sequence[tuple[str, str]], max_new_tokens: int = 48, temperature: float = 0.0,
             seed: int | None = None) -> list[Reply]:
        import openai

        out = []
        for req in requests:
            system, user = req[0], req[1]
            content: Any = user
            if len(req) > 2 and req[2]:  # retrieved text as its own part, marked untrusted
                content = [{"type": "text", "text": user}, {"type": "text", "text": req[2], "untrusted": True}]
            msgs = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": content}]
            kw: dict[str, Any] = {"model": self.model, "messages": msgs, "max_tokens": max_new_tokens,
                                  "temperature": temperature}
            if seed is not None:
                kw["seed"] = seed
            t0 = time.perf_counter()
            try:
                r = self.client.chat.completions.create(**kw)
                text = r.choices[0].message.content or ""
                # a guard that answers with a refusal marks it as OpenAI does: finish_reason "content_filter"
                filtered = r.choices[0].finish_reason == "content_filter"
                out.append(Reply(text, blocked=filtered, latency_s=time.perf_counter() - t0,
                                 error="content_filter" if filtered else ""))
            except openai.APIStatusError as e:
                if 400 <= e.status_code < 500 and e.status_code not in (401, 404):
                    out.append(Reply("", blocked=True, latency_s=time.perf_counter() - t0,
                                     error=f"HTTP {e.status_code}"))
                else:
                    raise ConfigError(f"target {self.base_url} answered HTTP {e.status_code}: "
                                      f"{(e.response.text if e.response is not None else str(e))[:200]}") from None
            except openai.APIConnectionError as e:
                raise ConfigError(f"target: cannot reach {self.base_url} ({e.__cause__ or e}); is the server up?") from None
        return out


def make_target(spec: str = "default", api_key: str | None = None, batch_size: int = 8, device: str = "cpu",
                untrusted_parts: bool = False) -> Target:
    """A target from a spec (table above). ``api_key`` is sent only to that URL (or read from
    ``LMLAB_TARGET_API_KEY``). ``untrusted_parts``: a URL target gets retrieved text as an untrusted part."""
    if spec.startswith(("http://", "https://")):
        url, _, model = spec.partition("#")
        return OpenAITarget(url, model or "default", api_key or os.environ.get("LMLAB_TARGET_API_KEY"),
                            untrusted_parts=untrusted_parts)
    from lmlab.lm import load_lm

    return LMTarget(load_lm(spec, device=device, batch_size=batch_size, needs=("text",)), name=f"lm:{spec}",
                    batch_size=batch_size)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class GatewayProcess:
    """``lmlab serve --config FILE`` on 127.0.0.1 and a free port, for the duration of a ``with`` block.

    >>> # with GatewayProcess("gateway.toml") as gw: make_target(gw.url + "#default", api_key="k1")
    """

    def __init__(self, config: str | Path, port: int | None = None, startup_s: float = 180.0,
                 log: str | Path | None = None, env: dict[str, str] | None = None):
        self.config = Path(config)
        if not self.config.exists():
            raise ConfigError(f"gateway config {self.config} does not exist")
        self.port = port or free_port()
        self.startup_s = startup_s
        self.log = Path(log) if log else None
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> GatewayProcess:
        import httpx

        out = open(self.log, "wb") if self.log else subprocess.DEVNULL
        cmd = [sys.executable, "-m", "lmlab", "serve", "--config", str(self.config), "--host", "127.0.0.1",
               "--port", str(self.port)]
        self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(self.env or {})})
        deadline = time.time() + self.startup_s
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise ConfigError(f"gateway exited with code {self.proc.returncode} at start"
                                  + (f"; see {self.log}" if self.log else ""))
            try:
                r = httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=2.0)
                if r.status_code < 500:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        self.__exit__()
        raise ConfigError(f"gateway did not answer on port {self.port} within {self.startup_s:.0f} s")

    def __exit__(self, *exc: Any) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
