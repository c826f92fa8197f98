"""Any OpenAI-compatible HTTP endpoint (vLLM, llama.cpp server, Ollama) behind the :class:`LM` interface.

Uses only the standard library (``urllib``). Nothing is contacted until a method is called::

    lm = OpenAILM("http://localhost:8000/v1", model="Qwen/Qwen2.5-0.5B-Instruct")
    lm.generate(["The capital of France is"], max_new_tokens=5)
    lm.logprobs(["The capital of France is"], [" Paris"])     # needs a server that echoes prompt logprobs
    lm.chat([{"role": "user", "content": "hi"}])               # /chat/completions, the server's template

``generate`` posts to ``/completions``, one request per prompt. ``logprobs`` asks for the prompt's
token log-probabilities with ``echo=true`` (vLLM and llama.cpp's server return them; Ollama does not)
and sums those of the tokens that start at or after the end of the prompt text.
``next_token_logprobs`` returns the server's top-k log-probabilities of the next token as a dict.
There are no full-vocabulary logits over HTTP, so ``next_token_logits`` is not available.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any

import torch

from lmlab.lm.base import LM, LMError, Message, _as_messages, check_pairs


class OpenAILM(LM):
    def __init__(self, base_url: str, model: str = "default", api_key: str | None = None, timeout: float = 120.0):
        if not base_url.startswith(("http://", "https://")):
            raise LMError(f"OpenAI-compatible endpoint must be an http(s) URL, got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key = api_key
        self.timeout = timeout
        self.name = f"{model}@{self.base_url}"

    def _post(self, route: str, payload: dict[str, Any]) -> dict[str, Any]:
        url = f"{self.base_url}/{route}"
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        req = urllib.request.Request(url, data=json.dumps(payload).encode(), headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return json.loads(resp.read().decode())
        except urllib.error.HTTPError as e:
            body = e.read().decode(errors="replace")[:300]
            raise LMError(f"{url} answered HTTP {e.code}: {body}") from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
            raise LMError(f"cannot reach {url}: {getattr(e, 'reason', e)}") from None
        except json.JSONDecodeError:
            raise LMError(f"{url} did not answer with JSON") from None

    def generate(self, prompts: Sequence[str], max_new_tokens: int = 32, temperature: float = 0.0,
                 top_p: float = 1.0, seed: int | None = None, stop: Sequence[str] = ()) -> list[str]:
        out = []
        for p in prompts:
            payload: dict[str, Any] = {"model": self.model, "prompt": p, "max_tokens": max_new_tokens,
                                       "temperature": temperature, "top_p": top_p}
            if seed is not None:
                payload["seed"] = seed
            if stop:
                payload["stop"] = list(stop)
            out.append(self._post("completions", payload)["choices"][0]["text"])
        return out

    def chat(self, messages: str | Sequence[Message], system: str | None = None, max_new_tokens: int = 256,
             temperature: float = 0.0, top_p: float = 1.0, seed: int | None = None) -> str:
        """One chat turn through ``/chat/completions`` (the server applies its chat template)."""
        payload: dict[str, Any] = {"model": self.model, "messages": _as_messages(messages, system),
                                   "max_tokens": max_new_tokens, "temperature": temperature, "top_p": top_p}
        if seed is not None:
            payload["seed"] = seed
        return self._post("chat/completions", payload)["choices"][0]["message"]["content"]

    def logprobs(self, prompts: Sequence[str], completions: Sequence[str], per_token: bool = False) -> Any:
        check_pairs(prompts, completions)
        results = []
        for p, c in zip(prompts, completions):
            payload = {"model": self.model, "prompt": p + c, "max_tokens": 1, "echo": True, "logprobs": 1,
                       "temperature": 0.0}
            choice = self._post("completions", payload)["choices"][0]
            lp = choice.get("logprobs") or {}
            tokens, values, offsets = lp.get("tokens"), lp.get("token_logprobs"), lp.get("text_offset")
            if not tokens or values is None or offsets is None:
                raise LMError(f"{self.base_url} returned no prompt log-probabilities (echo=true); "
                              "use a server that does (vLLM, llama.cpp server) or an HF backend")
            end = len(p) + len(c)
            picked = [v for v, o in zip(values, offsets) if len(p) <= o < end]
            if not picked or any(v is None for v in picked):
                raise LMError(f"{self.base_url} returned no log-probability for the completion {c!r}")
            results.append(torch.tensor(picked, dtype=torch.float32))
        return results if per_token else torch.stack([r.sum() for r in results])

    def next_token_logprobs(self, prompts: Sequence[str], top_k: int = 5) -> list[dict[str, float]]:
        """The server's top-k next tokens and their log-probabilities, one dict per prompt."""
        out = []
        for p in prompts:
            payload = {"model": self.model, "prompt": p, "max_tokens": 1, "logprobs": top_k, "temperature": 0.0}
            lp = self._post("completions", payload)["choices"][0].get("logprobs") or {}
            top = lp.get("top_logprobs")
            if not top:
                raise LMError(f"{self.base_url} returned no top_logprobs for the next token")
            out.append({str(k): float(v) for k, v in top[0].items()})
        return out
