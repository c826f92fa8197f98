"""Errors in the OpenAI shape: ``{"error": {"message", "type", "param", "code"}}`` with the matching HTTP status."""

from __future__ import annotations

import json
import math
from typing import Any


class GatewayError(Exception):
    """An answer the client gets as an OpenAI-style error. ``headers`` (e.g. Retry-After) go on the response."""

    def __init__(self, status: int, message: str, type: str = "invalid_request_error", code: str | None = None,
                 param: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.code, self.param = status, message, type, code, param
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def sse(self) -> str:
        """The error as one server-sent event (a stream that fails after it started)."""
        return f"data: {json.dumps(self.body())}\n\n"


def bad_request(message: str, param: str | None = None, code: str | None = None) -> GatewayError:
    return GatewayError(400, message, "invalid_request_error", code, param)


def unknown_model(name: str, known: list[str]) -> GatewayError:
    return GatewayError(404, f"The model `{name}` does not exist or you do not have access to it; "
                             f"available: {', '.join(known)}", "invalid_request_error", "model_not_found", "model")


def context_length(n_prompt: int, max_new: int, limit: int, param: str = "messages") -> GatewayError:
    return GatewayError(400, f"This model's maximum context length is {limit} tokens. However, you requested "
                             f"{n_prompt + max_new} tokens ({n_prompt} in the messages, {max_new} in the completion). "
                             "Please reduce the length of the messages or completion.",
                        "invalid_request_error", "context_length_exceeded", param)


def overloaded(message: str, retry_after_s: float, status: int = 503) -> GatewayError:
    return GatewayError(status, message, "server_error" if status == 503 else "rate_limit_error",
                        "server_overloaded" if status == 503 else "rate_limit_exceeded",
                        headers={"Retry-After": str(max(1, math.ceil(retry_after_s)))})


def rate_limited(retry_after_s: float) -> GatewayError:
    return GatewayError(429, f"Rate limit reached for this API key; retry after {retry_after_s:.2f} s.",
                        "rate_limit_error", "rate_limit_exceeded",
                        headers={"Retry-After": str(max(1, math.ceil(retry_after_s)))})


def upstream(message: str, status: int = 502, code: str = "upstream_error",
             headers: dict[str, str] | None = None) -> GatewayError:
    return GatewayError(status, message, "server_error", code, headers=headers)
