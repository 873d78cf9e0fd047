"""The server's settings: one msgspec Struct, each field with an MR_* environment twin.

`Settings.from_env()` reads the environment; `mr serve` flags override it. MR_HOST may be a bare
host ("0.0.0.0") or the URL clients use ("http://127.0.0.1:12434"): mr's CLI reads the same
variable to find the server, so both forms are accepted.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from urllib.parse import urlsplit

import msgspec

from mr import config as mr_config

DEFAULT_HOST = "127.0.0.1"
DEFAULT_MAX_BODY = 16 << 20
DEFAULT_RESPONSES_BYTES = 64 << 20
DEFAULT_REQUEST_LOG_BYTES = 16 << 20
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})


class Settings(msgspec.Struct, kw_only=True):
    host: str = DEFAULT_HOST
    port: int = mr_config.DEFAULT_PORT
    api_key: str | None = None
    no_auth: bool = False  # off loopback without a key: start anyway (mutations stay loopback-only)
    parallel: int = 4  # slots per model
    ctx_size: int | None = None  # context per model (all slots share it, as in llama.cpp)
    keep_alive: float = 300.0  # seconds; math.inf: never unload; 0: unload when idle
    models_dir: str | None = None  # None: mr.config.models_dir()
    max_queue: int = 64
    memory_budget: int | None = None  # bytes; None: 80% of RAM (90% of VRAM with a GPU)
    allowed_hosts: list[str] = msgspec.field(default_factory=list)  # extra Host header names
    cors_origins: list[str] = msgspec.field(default_factory=list)  # extra origins; "*" for any
    # proxies (addresses or networks) whose X-Forwarded-For / Forwarded name the client (mr.server.proxies)
    trusted_proxies: list[str] = msgspec.field(default_factory=list)
    max_body_bytes: int = DEFAULT_MAX_BODY
    load_timeout: float = 300.0
    header_timeout: float = 10.0  # seconds for a request's headers (slowloris)
    body_timeout: float = 120.0  # seconds for a request's body once its headers are in
    direct_streams: bool = True  # plain streamed tokens go to the socket past ASGI (mr.server.wire)
    engine_writes: bool = True  # ... sent by the engine thread itself (one choice, plain TCP)
    loop: str = "auto"  # the event loop: "auto" (uvloop when installed), "asyncio" or "uvloop"
    threads: int = 0
    gpu_layers: int = -1
    flash_attn: str = "auto"  # "auto" (llama.cpp's choice: on where supported), "on" or "off"
    repack: bool = True  # repack weights for the CPU's fastest kernels (AMX, AVX-512 layouts)
    idle_cache: float = 0.0  # share of a model's KV cells idle conversations' caches may keep (0..1)
    per_slot_kv: bool = False  # one KV cache per slot (ctx_size / parallel cells each), not one shared
    deterministic: bool = False  # batch-invariant answers (EngineOptions.deterministic)
    spec: str = "auto"  # speculative decoding: "auto", "ngram" or "off" (EngineOptions.spec)
    spec_max: int = 64  # the longest draft (EngineOptions.spec_max)
    draft_model: str | None = None  # a store name or GGUF path that drafts for every model
    settings_path: str | None = None  # per-model settings file; None: $MR_HOME/model-settings.json
    log_requests: bool = True
    responses_ttl: float = 3600.0  # seconds a stored Responses API answer is kept
    responses_max_entries: int = 1000
    responses_max_bytes: int = DEFAULT_RESPONSES_BYTES
    request_log_size: int = 10  # request/response pairs kept per model (GET /engines/requests); 0: off
    request_log_body_bytes: int = 64 << 10  # each recorded body is cut at this size
    request_log_max_bytes: int = DEFAULT_REQUEST_LOG_BYTES  # all records together, as JSON; oldest go first
    tls_cert: str | None = None  # PEM certificate (chain): serve HTTPS
    tls_key: str | None = None  # its PEM private key
    rpc: list[str] = msgspec.field(default_factory=list)  # llama.cpp RPC workers for the models' layers
    # More workers `POST /engines/configure` may name for a model (besides `rpc`): weights and
    # activations go to a model's workers, so a client must not pick any host:port it likes
    rpc_allow: list[str] = msgspec.field(default_factory=list)

    @property
    def is_loopback(self) -> bool:
        return self.host in LOOPBACK or self.host.startswith("127.")

    def model_settings_path(self) -> Path:
        return Path(self.settings_path) if self.settings_path else mr_config.home() / "model-settings.json"

    def models_root(self) -> Path:
        return Path(self.models_dir) if self.models_dir else mr_config.models_dir()

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        """Defaults overridden by MR_* variables (invalid values raise ValueError)."""
        e = os.environ if env is None else env
        out = cls()
        host, port = split_host(e.get("MR_HOST", ""))
        if host:
            out.host = host
        if port:
            out.port = port
        for name, field, convert in _ENV:
            raw = e.get(name)
            if raw is not None and raw.strip() != "":
                setattr(out, field, convert(raw.strip()))
        return out


def split_host(value: str) -> tuple[str | None, int | None]:
    """"0.0.0.0" -> ("0.0.0.0", None); "http://127.0.0.1:8080" -> ("127.0.0.1", 8080)."""
    value = value.strip()
    if not value:
        return None, None
    if "://" in value:
        parts = urlsplit(value)
        return parts.hostname, parts.port
    return value, None


def _csv(raw: str) -> list[str]:
    return [part.strip() for part in raw.split(",") if part.strip()]


def _keep_alive(raw: str) -> float:
    from mr.runner.duration import parse_duration

    value = parse_duration(raw, "MR_KEEP_ALIVE")
    return 300.0 if value is None else value


def _size(raw: str) -> int | None:
    from mr.runner.memory import parse_size

    return parse_size(raw)


def _ttl(raw: str) -> float:
    from mr.runner.duration import parse_duration

    return parse_duration(raw, "MR_RESPONSES_TTL") or 0.0


def _bytes(raw: str) -> int:
    return _size(raw) or DEFAULT_RESPONSES_BYTES


def _log_bytes(raw: str) -> int:
    value = _size(raw)
    return DEFAULT_REQUEST_LOG_BYTES if value is None else value


def _networks(raw: str) -> list[str]:
    """Checked here: a typo stops `mr serve` with one line, not a traceback when the app is built."""
    from mr.server.proxies import parse_networks

    values = _csv(raw)
    parse_networks(values)
    return values


def _share(raw: str) -> float:
    value = float(raw)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"MR_IDLE_CACHE must be between 0 and 1, not {raw!r}")
    return value


def _flash_attn(raw: str) -> str:
    if raw not in ("auto", "on", "off"):
        raise ValueError(f"MR_FLASH_ATTN must be auto, on or off, not {raw!r}")
    return raw


def _spec(raw: str) -> str:
    if raw not in ("auto", "ngram", "off"):
        raise ValueError(f"MR_SPEC must be auto, ngram or off, not {raw!r}")
    return raw


def _spec_max(raw: str) -> int:
    value = int(raw)
    if not 0 <= value <= 64:
        raise ValueError(f"MR_SPEC_MAX must be between 0 and 64, not {raw!r}")
    return value


def _loop(raw: str) -> str:
    if raw not in ("auto", "asyncio", "uvloop"):
        raise ValueError(f"MR_LOOP must be auto, asyncio or uvloop, not {raw!r}")
    return raw


def _bool(raw: str) -> bool:
    return raw.lower() not in ("0", "false", "no", "off", "")


_ENV = [
    ("MR_PORT", "port", int),
    ("MR_API_KEY", "api_key", str),
    ("MR_NO_AUTH", "no_auth", _bool),
    ("MR_PARALLEL", "parallel", int),
    ("MR_CTX_SIZE", "ctx_size", int),
    ("MR_KEEP_ALIVE", "keep_alive", _keep_alive),
    ("MR_MODELS_DIR", "models_dir", str),
    ("MR_MAX_QUEUE", "max_queue", int),
    ("MR_MEMORY_BUDGET", "memory_budget", _size),
    ("MR_ALLOWED_HOSTS", "allowed_hosts", _csv),
    ("MR_CORS_ORIGINS", "cors_origins", _csv),
    ("MR_TRUSTED_PROXIES", "trusted_proxies", _networks),
    ("MR_MAX_BODY_BYTES", "max_body_bytes", int),
    ("MR_LOAD_TIMEOUT", "load_timeout", float),
    ("MR_HEADER_TIMEOUT", "header_timeout", float),
    ("MR_BODY_TIMEOUT", "body_timeout", float),
    ("MR_DIRECT_STREAMS", "direct_streams", _bool),
    ("MR_ENGINE_WRITES", "engine_writes", _bool),
    ("MR_LOOP", "loop", _loop),
    ("MR_THREADS", "threads", int),
    ("MR_GPU_LAYERS", "gpu_layers", int),
    ("MR_FLASH_ATTN", "flash_attn", _flash_attn),
    ("MR_REPACK", "repack", _bool),
    ("MR_IDLE_CACHE", "idle_cache", _share),
    ("MR_PER_SLOT_KV", "per_slot_kv", _bool),
    ("MR_DETERMINISTIC", "deterministic", _bool),
    ("MR_SPEC", "spec", _spec),
    ("MR_SPEC_MAX", "spec_max", _spec_max),
    ("MR_DRAFT_MODEL", "draft_model", str),
    ("MR_LOG_REQUESTS", "log_requests", _bool),
    ("MR_RESPONSES_TTL", "responses_ttl", _ttl),
    ("MR_RESPONSES_MAX_ENTRIES", "responses_max_entries", int),
    ("MR_RESPONSES_MAX_BYTES", "responses_max_bytes", _bytes),
    ("MR_REQUEST_LOG_SIZE", "request_log_size", int),
    ("MR_REQUEST_LOG_BODY_BYTES", "request_log_body_bytes", int),
    ("MR_REQUEST_LOG_MAX_BYTES", "request_log_max_bytes", _log_bytes),
    ("MR_TLS_CERT", "tls_cert", str),
    ("MR_TLS_KEY", "tls_key", str),
    ("MR_RPC", "rpc", _csv),
    ("MR_RPC_ALLOW", "rpc_allow", _csv),
]

FOREVER = math.inf
