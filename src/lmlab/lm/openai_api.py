"""Any OpenAI-compatible HTTP endpoint (vLLM, llama.cpp server, Ollama) behind the :class:`LM` interface.

Uses the official ``openai`` client (the ``llm`` extra): one HTTP connection pool reused across calls,
retries with exponential back-off on connection errors, 408/409/429 and 5xx answers (``max_retries``),
and a timeout per request. The client is created on the first call, so nothing is contacted (and
``openai`` is not imported) until a method is called::

    lm = OpenAILM("http://localhost:8000/v1", model="Qwen/Qwen2.5-0.5B-Instruct")
    lm.generate(["The capital of France is"], max_new_tokens=5)
    lm.logprobs(["The capital of France is"], [" Paris"])     # needs a server that echoes prompt logprobs
    lm.chat([{"role": "user", "content": "hi"}])               # /chat/completions, the server's template

``generate`` posts to ``/completions``, one request per prompt. ``logprobs`` asks for the prompt's
token log-probabilities with ``echo=true`` (vLLM and llama.cpp's server return them; Ollama does not)
and sums those of the tokens that start at or after the end of the prompt text.
``next_token_logprobs`` returns the server's top-k log-probabilities of the next token as a dict.
There are no full-vocabulary logits over HTTP: this backend has only the ``text`` capability, and
``load_lm(spec, needs=("logits",))`` refuses it at load time.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from lmlab.lm.base import LM, LMError, Message, _as_messages, check_pairs, model_fingerprint


class OpenAILM(LM):
    capabilities = frozenset({"text"})
    backend = "the OpenAI-compatible HTTP backend"

    def __init__(self, base_url: str, model: str = "default", api_key: str | None = None, timeout: float = 120.0,
                 max_retries: int = 2):
        if not base_url.startswith(("http://", "https://")):
            raise LMError(f"OpenAI-compatible endpoint must be an http(s) URL, got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key = api_key
        self.timeout = timeout
        self.max_retries = max_retries
        self.name = f"{model}@{self.base_url}"
        self._client: Any = None

    @property
    def fingerprint(self) -> str:
        return model_fingerprint(self.name, None)

    @property
    def client(self) -> Any:
        """The ``openai.OpenAI`` client (created on first use; one connection pool for every call)."""
        if self._client is None:
            try:
                import openai
            except ImportError:
                raise LMError("the OpenAI-compatible backend needs the 'openai' package: pip install -e '.[llm]'") from None
            # local servers (vLLM, llama.cpp) ignore the key, but the client insists on one
            self._client = openai.OpenAI(base_url=self.base_url, api_key=self.api_key or "unused",
                                         timeout=self.timeout, max_retries=self.max_retries)
        return self._client

    def _post(self, route: str, payload: dict[str, Any]) -> dict[str, Any]:
        import openai

        url = f"{self.base_url}/{route}"
        api = self.client.chat.completions if route == "chat/completions" else self.client.completions
        try:
            return api.create(**payload).model_dump()
        except openai.APIStatusError as e:
            body = e.response.text[:300] if e.response is not None else str(e)
            raise LMError(f"{url} answered HTTP {e.status_code}: {body}") from None
        except openai.APITimeoutError:
            raise LMError(f"cannot reach {url}: no answer within {self.timeout} s") from None
        except openai.APIConnectionError as e:
            raise LMError(f"cannot reach {url}: {e.__cause__ or e}") from None
        except openai.APIResponseValidationError:
            raise LMError(f"{url} did not answer with an OpenAI-style JSON body") from None

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
