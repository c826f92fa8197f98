"""The gateway's configuration: one frozen dataclass per pipeline stage, loaded from TOML (or JSON).

A minimal ``gateway.toml``::

    [server]
    port = 8000

    [[backends]]
    name = "smollm2"          # the model name clients send
    kind = "local"            # local (load_lm spec), upstream (OpenAI-compatible URL) or fake
    model = "default"         # the embedded SmolLM2-135M-Instruct

    [[backends]]
    name = "big"
    kind = "upstream"
    url = "http://127.0.0.1:8080/v1"
    model = "Qwen/Qwen2.5-7B-Instruct"

    [cache]
    threshold = 0.99

    [[auth.keys]]
    sha256 = "9f86d081..."   # `lmlab serve --hash-key KEY` prints it; the key itself is never stored
    tenant = "acme"
    rps = 5
    burst = 10

Every field is documented where it is declared; ``docs/serve.md`` lists them all (generated from these classes
by :func:`reference`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from lmlab.config import Config, ConfigError
from lmlab.moderation.injection import InjectionConfig

#: environment variable naming the config file for ``uvicorn --factory lmlab.serve.app:app_from_env``
CONFIG_ENV = "LMLAB_GATEWAY_CONFIG"
#: cosine threshold of the default (untuned MiniLM) cache: the prompt-cache study's lowest threshold with <= 1%
#: wrong hits on its calibration stream (docs/studies/prompt-cache.md); at this value it serves near-duplicates only
DEFAULT_CACHE_THRESHOLD = 0.99

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@-]{0,127}$")


@dataclass(frozen=True)
class ServerConfig(Config):
    host: str = "127.0.0.1"  # bind address (loopback by default)
    port: int = 8000  # TCP port
    workers: int = 1  # uvicorn worker processes (they share the SQLite cache and the metrics directory)
    state_dir: str = ""  # cache store, guard artifacts, metrics; "" = <cache_root>/serve ($LMLAB_CACHE when set)
    max_body_bytes: int = 1_000_000  # larger request bodies get 413
    cors_origins: tuple[str, ...] = ()  # CORS is off unless origins are listed ("*" allows any)
    #: with workers > 1, local backends (and the guard that reads their logits) run in one model process on a
    #: loopback port, which batches the requests of every worker; false: each worker loads its own copy
    model_host: bool = True
    #: "gateway", or "model-host" (set by `lmlab serve --workers N` for that process: generation only)
    role: Literal["gateway", "model-host"] = "gateway"

    def validate(self) -> None:
        if not 0 <= self.port < 65536:
            raise ConfigError(f"server.port ({self.port}) must be in 0..65535")
        if self.workers < 1:
            raise ConfigError(f"server.workers ({self.workers}) must be >= 1")
        if self.max_body_bytes < 1024:
            raise ConfigError(f"server.max_body_bytes ({self.max_body_bytes}) must be >= 1024")


@dataclass(frozen=True)
class BackendConfig(Config):
    name: str = "smollm2"  # the model name clients send (and /v1/models lists)
    kind: Literal["local", "upstream", "fake"] = "local"  # where answers come from
    model: str = "default"  # local: a load_lm spec (default, .gguf, HF dir); upstream: the upstream's model name
    url: str = ""  # upstream: base URL of an OpenAI-compatible API, e.g. http://127.0.0.1:8080/v1
    api_key_env: str = ""  # upstream: environment variable holding its API key (never the key itself)
    device: str = "cpu"  # local
    max_batch: int = 8  # local: requests decoded together by the engine's queue
    max_pending: int = 64  # local: requests waiting for a slot; beyond this the gateway answers 503
    max_len: int = 2048  # local: prompt + completion tokens per request (longer prompts get 400)
    default_max_tokens: int = 256  # when the request does not set max_tokens
    connect_timeout_s: float = 2.0  # upstream
    read_timeout_s: float = 30.0  # upstream: silence longer than this between bytes fails the attempt
    timeout_s: float = 60.0  # total time for one request, retries included (all kinds)
    retries: int = 2  # upstream: extra attempts on connection errors and 5xx (never on 4xx)
    backoff_s: float = 0.2  # upstream: first retry delay, doubled each retry
    breaker_failures: int = 5  # upstream: consecutive failed requests that open the circuit
    breaker_cooldown_s: float = 30.0  # upstream: open circuit waits this long, then lets one trial through
    reply: str = ""  # fake: the canned answer ("" = echo the last user message)
    delay_s: float = 0.0  # fake: added latency

    def validate(self) -> None:
        if not _NAME.match(self.name):
            raise ConfigError(f"backends.name ({self.name!r}) must be 1-128 characters of letters, digits and ._:/@-")
        if self.kind == "upstream" and not self.url.startswith(("http://", "https://")):
            raise ConfigError(f"backends[{self.name}].url ({self.url!r}) must be an http(s) URL for an upstream backend, "
                              "e.g. http://127.0.0.1:8080/v1")
        for f in ("connect_timeout_s", "read_timeout_s", "timeout_s"):
            if getattr(self, f) <= 0:
                raise ConfigError(f"backends[{self.name}].{f} ({getattr(self, f)}) must be > 0")
        if self.retries < 0 or self.breaker_failures < 1 or self.breaker_cooldown_s < 0 or self.backoff_s < 0:
            raise ConfigError(f"backends[{self.name}]: retries, backoff_s, breaker_cooldown_s must be >= 0 and "
                              "breaker_failures >= 1")
        if self.max_batch < 1 or self.max_pending < 0 or self.max_len < 16 or self.default_max_tokens < 1:
            raise ConfigError(f"backends[{self.name}]: max_batch >= 1, max_pending >= 0, max_len >= 16 and "
                              "default_max_tokens >= 1")


@dataclass(frozen=True)
class GuardConfig(Config):
    enabled: bool = True  # screen each request's last user message
    #: "default": a MULI detector on the serving model's own first-token logits, calibrated on the bundled
    #: moderation set: shipped with lmlab for the default model, else built on first start and cached under
    #: state_dir; a path to a saved detector (.npz);
    #: "module:attr" naming an object (or a zero-argument factory) with ``score(texts) -> P(toxic)``; or the
    #: URL of another lmlab gateway whose /v1/moderations is used (its threshold too)
    detector: str = "default"
    backend: str = ""  # the local backend whose logits the guard reads ("" = the first local backend)
    target_fpr: float = 0.01  # the default detector's threshold: this false-positive rate on a calibration split
    calib_frac: float = 0.3  # share of the bundled set held out for the threshold
    threshold: float | None = None  # overrides the detector's own threshold (P(toxic) at or above = flagged)
    refusal: str = "I can't help with that request."  # the answer to a flagged request
    seed: int = 0  # the default detector's split and fit

    def validate(self) -> None:
        if not 0 < self.target_fpr < 1:
            raise ConfigError(f"guard.target_fpr ({self.target_fpr}) must be in (0, 1)")
        if not 0 < self.calib_frac < 1:
            raise ConfigError(f"guard.calib_frac ({self.calib_frac}) must be in (0, 1)")
        if self.threshold is not None and not 0 <= self.threshold <= 1:
            raise ConfigError(f"guard.threshold ({self.threshold}) is a probability in [0, 1]")


@dataclass(frozen=True)
class CacheConfig(Config):
    enabled: bool = True  # look up and store answers (temperature 0, or when the request opts in)
    #: "minilm" (all-MiniLM-L6-v2, untuned), "hashing" (lexical, instant), or a sentence-transformers directory
    #: (e.g. one tuned by `lmlab run prompt-cache`)
    embedder: str = "minilm"
    threshold: float = DEFAULT_CACHE_THRESHOLD  # cosine similarity at or above which a cached answer is served
    store: str = ""  # the store directory; "" = <state_dir>/cache
    ttl_s: float | None = None  # entries older than this are not served (None: no expiry)
    max_entries: int | None = None  # least recently used entries are evicted above this (None: no limit)
    sampled: bool = False  # also cache requests with temperature > 0 (a request can opt in with lmlab.cache=true)

    def validate(self) -> None:
        if not -1 <= self.threshold <= 1:
            raise ConfigError(f"cache.threshold ({self.threshold}) is a cosine similarity in [-1, 1]")


@dataclass(frozen=True)
class RouterConfig(Config):
    alias: str = "auto"  # the model name that asks the gateway to choose a backend
    #: a correctness matrix (lmlab.routing.data.save_matrix .npz) whose model names are backend names and whose
    #: questions have text: the EmbedLLM router is fitted on it (features from the cache's embedder). "" = fallback
    matrix: str = ""
    fallback: tuple[str, ...] = ()  # backend names in the order tried; () = the order of [[backends]]
    epochs: int = 50  # EmbedLLM training (the reference code's defaults; raise lr for a small matrix)
    lr: float = 1e-4  # EmbedLLM Adam learning rate
    batch_size: int = 2048  # EmbedLLM batch size

    def validate(self) -> None:
        if self.epochs < 1 or self.lr <= 0 or self.batch_size < 1:
            raise ConfigError("router: epochs >= 1, lr > 0 and batch_size >= 1")
        if not _NAME.match(self.alias):
            raise ConfigError(f"router.alias ({self.alias!r}) must be a plain model name")


@dataclass(frozen=True)
class KeyConfig(Config):
    sha256: str = ""  # hex sha256 of the API key (`lmlab serve --hash-key KEY`)
    tenant: str = "default"  # cache namespace and metrics label
    name: str = ""  # a label for logs (never the key)
    rps: float | None = None  # token-bucket refill per second (None = limits.default_rps); shared by all workers
    burst: float | None = None  # bucket size (None = limits.default_burst)

    def validate(self) -> None:
        if not re.fullmatch(r"[0-9a-f]{64}", self.sha256.lower().removeprefix("sha256:")):
            raise ConfigError(f"auth.keys.sha256 ({self.sha256[:12]}...) must be 64 hex digits; "
                              "`lmlab serve --hash-key KEY` prints it")
        if not self.tenant:
            raise ConfigError("auth.keys.tenant is empty; name the tenant")

    @property
    def digest(self) -> str:
        return self.sha256.lower().removeprefix("sha256:")


@dataclass(frozen=True)
class AuthConfig(Config):
    keys: tuple[KeyConfig, ...] = ()  # no keys: no authentication (tenant "default")


@dataclass(frozen=True)
class LimitsConfig(Config):
    default_rps: float = 0.0  # per key; 0 = unlimited
    default_burst: float = 20.0  # per key: requests allowed at once before the rate applies
    max_inflight: int = 256  # requests in progress in one worker; beyond it 503 with Retry-After
    max_tokens: int = 2048  # upper bound on a request's max_tokens
    retry_after_s: int = 1  # Retry-After on 503 overload answers

    def validate(self) -> None:
        if self.default_rps < 0 or self.default_burst < 1 or self.max_inflight < 1 or self.max_tokens < 1:
            raise ConfigError("limits: default_rps >= 0, default_burst >= 1, max_inflight >= 1, max_tokens >= 1")


@dataclass(frozen=True)
class LoggingConfig(Config):
    level: str = "info"  # debug, info, warning, error
    prompts: bool = False  # log prompt and answer text (off: only sizes, hashes, decisions)
    access: bool = True  # one JSON line per request

    def validate(self) -> None:
        if self.level.lower() not in ("debug", "info", "warning", "error"):
            raise ConfigError(f"logging.level ({self.level!r}): use debug, info, warning or error")


def _default_backends() -> tuple[BackendConfig, ...]:
    return (BackendConfig(),)


@dataclass(frozen=True)
class GatewayConfig(Config):
    """``lmlab serve``'s whole configuration (every section optional)."""

    server: ServerConfig = field(default_factory=ServerConfig)
    backends: tuple[BackendConfig, ...] = field(default_factory=_default_backends)
    guard: GuardConfig = field(default_factory=GuardConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    router: RouterConfig = field(default_factory=RouterConfig)
    injection: InjectionConfig = field(default_factory=InjectionConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)

    def validate(self) -> None:
        if not self.backends:
            raise ConfigError("backends: empty; configure at least one [[backends]] entry")
        names = [b.name for b in self.backends]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ConfigError(f"backends: name {dup[0]!r} is used twice; each backend needs its own name")
        if self.router.alias in names:
            raise ConfigError(f"router.alias ({self.router.alias!r}) is also a backend name; rename one")
        for n in self.router.fallback:
            if n not in names:
                raise ConfigError(f"router.fallback: {n!r} is not a backend name ({', '.join(names)})")
        if self.guard.backend and self.guard.backend not in names:
            raise ConfigError(f"guard.backend: {self.guard.backend!r} is not a backend name ({', '.join(names)})")
        digests = [k.digest for k in self.auth.keys]
        if len(set(digests)) != len(digests):
            raise ConfigError("auth.keys: the same key hash is listed twice")

    # -- loading -----------------------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path | None = None, overrides: list[str] | None = None) -> GatewayConfig:
        """From a TOML or JSON file (None: defaults), then dotted ``key=value`` overrides."""
        from lmlab.config import apply_overrides

        cfg = cls() if path is None else cls.from_file(path)
        return apply_overrides(cfg, overrides) if overrides else cfg

    @classmethod
    def from_file(cls, path: str | Path) -> GatewayConfig:
        path = Path(path).expanduser()
        if not path.is_file():
            raise ConfigError(f"gateway config {path} does not exist; pass --config FILE.toml or leave it out for defaults")
        text = path.read_text(encoding="utf-8")
        try:
            if path.suffix == ".json":
                data = json.loads(text)
            else:
                import tomllib

                data = tomllib.loads(text)
        except (ValueError, json.JSONDecodeError) as e:
            raise ConfigError(f"gateway config {path}: not valid {'JSON' if path.suffix == '.json' else 'TOML'} ({e})") from None
        try:
            return cls.from_dict(data)
        except ConfigError as e:
            raise ConfigError(f"{path}: {e}") from None

    def state_dir(self) -> Path:
        from lmlab.io import cache_root

        return Path(self.server.state_dir).expanduser() if self.server.state_dir else cache_root() / "serve"

    def backend(self, name: str) -> BackendConfig | None:
        return next((b for b in self.backends if b.name == name), None)


def hash_key(key: str) -> str:
    """The hex sha256 of an API key, as ``auth.keys.sha256`` stores it."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def reference() -> str:
    """A Markdown table of every config field (section, field, type, default, comment) for docs/serve.md."""
    import inspect

    rows = ["| section | field | type | default | meaning |", "|---|---|---|---|---|"]
    sections = [("server", ServerConfig), ("[[backends]]", BackendConfig), ("guard", GuardConfig),
                ("cache", CacheConfig), ("router", RouterConfig), ("injection", InjectionConfig),
                ("[[auth.keys]]", KeyConfig), ("limits", LimitsConfig), ("logging", LoggingConfig)]
    for sec, cls in sections:
        src = inspect.getsource(cls)
        comments = {}
        lines = src.splitlines()
        for i, line in enumerate(lines):
            m = re.match(r"\s+(\w+): [^=]+=.*?(?:#\s*(.*))?$", line)
            if m:
                note = m.group(2) or ""
                j = i - 1
                pre = []
                while j >= 0 and lines[j].strip().startswith("#:"):
                    pre.insert(0, lines[j].strip()[2:].strip())
                    j -= 1
                comments[m.group(1)] = " ".join(pre + ([note] if note else []))
        for f in dataclasses.fields(cls):
            default = f.default if f.default is not dataclasses.MISSING else (
                f.default_factory() if f.default_factory is not dataclasses.MISSING else "")
            if sec == "injection" and f.name == "patterns":
                default = f"{len(default)} built-in patterns"
            t = str(f.type).replace("|", "or")
            d = json.dumps(default) if not isinstance(default, str) or sec != "injection" else json.dumps(default)
            rows.append(f"| {sec} | `{f.name}` | {t} | `{d}` | {comments.get(f.name, '').replace('|', '/')} |")
    return "\n".join(rows)


def env_config_path() -> str | None:
    return os.environ.get(CONFIG_ENV) or None


__all__ = ["AuthConfig", "BackendConfig", "CacheConfig", "CONFIG_ENV", "GatewayConfig", "GuardConfig", "KeyConfig",
           "LimitsConfig", "LoggingConfig", "RouterConfig", "ServerConfig", "hash_key", "reference"]
