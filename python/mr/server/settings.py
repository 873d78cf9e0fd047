"""The server's settings: one msgspec Struct. `Settings.from_env()` reads the MR_* variables that
mr.config declares for `mr serve` (each the twin of a flag); `mr serve`'s flags override them. A
field without a variable is set by its flag, or from Python (the experiment switches below).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path

import msgspec

from mr import config as mr_config
from mr.media.types import MediaLimits

DEFAULT_HOST = mr_config.DEFAULT_HOST
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
    # Experiment switches, with no flag or variable: the bench's ceiling part measures what each
    # part of the streaming path is worth by turning it off (mr.cli.serve.serve_with).
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
    # http(s) image and audio URLs in requests are fetched (size and time capped); off, each is a
    # 400: a local server must not become an open fetcher for whoever can reach it
    allow_remote_media: bool = False

    @property
    def is_loopback(self) -> bool:
        return self.host in LOOPBACK or self.host.startswith("127.")

    def media_limits(self) -> MediaLimits:
        """The bounds of every request's images and audio (mr.media)."""
        return MediaLimits(remote=self.allow_remote_media)

    def model_settings_path(self) -> Path:
        return Path(self.settings_path) if self.settings_path else mr_config.home() / "model-settings.json"

    def models_root(self) -> Path:
        return Path(self.models_dir) if self.models_dir else mr_config.models_dir()

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Defaults overridden by the MR_* variables of `mr serve` (invalid values raise ValueError)."""
        out = cls()
        host, port = mr_config.bind_address(env)
        if host:
            out.host = host
        if port:
            out.port = port
        for name, (field, convert) in ENV.items():
            value = mr_config.raw(name, env)
            if value is None:
                continue
            try:
                setattr(out, field, convert(value))
            except ValueError as exc:
                raise ValueError(exc if name in str(exc) else f"{name}={value!r}: {exc}") from None
        return out


def _keep_alive(raw: str) -> float:
    from mr.runner.duration import parse_duration

    value = parse_duration(raw, "MR_KEEP_ALIVE")
    return 300.0 if value is None else value


def _size(raw: str) -> int | None:
    from mr.runner.memory import parse_size

    return parse_size(raw)


def _networks(raw: str) -> list[str]:
    """Checked here: a typo stops `mr serve` with one line, not a traceback when the app is built."""
    from mr.server.proxies import parse_networks

    values = _csv(raw)
    parse_networks(values)
    return values


def _csv(raw: str) -> list[str]:
    return [part.strip() for part in raw.split(",") if part.strip()]


def _choice(name: str, allowed: tuple[str, ...]) -> Callable[[str], str]:
    def convert(raw: str) -> str:
        if raw not in allowed:
            raise ValueError(f"{name} must be {', '.join(allowed[:-1])} or {allowed[-1]}, not {raw!r}")
        return raw

    return convert


# variable -> (Settings field, conversion); every name is declared in mr.config.VARS.
ENV: dict[str, tuple[str, Callable[[str], object]]] = {
    "MR_PORT": ("port", int),
    "MR_API_KEY": ("api_key", str),
    "MR_PARALLEL": ("parallel", int),
    "MR_CTX_SIZE": ("ctx_size", int),
    "MR_KEEP_ALIVE": ("keep_alive", _keep_alive),
    "MR_MODELS_DIR": ("models_dir", str),
    "MR_MEMORY_BUDGET": ("memory_budget", _size),
    "MR_FLASH_ATTN": ("flash_attn", _choice("MR_FLASH_ATTN", ("auto", "on", "off"))),
    "MR_PER_SLOT_KV": ("per_slot_kv", mr_config.switch),
    "MR_DETERMINISTIC": ("deterministic", mr_config.switch),
    "MR_SPEC": ("spec", _choice("MR_SPEC", ("auto", "ngram", "off"))),
    "MR_TLS_CERT": ("tls_cert", str),
    "MR_TLS_KEY": ("tls_key", str),
    "MR_TRUSTED_PROXIES": ("trusted_proxies", _networks),
    "MR_CORS_ORIGINS": ("cors_origins", _csv),
    "MR_ALLOW_REMOTE_MEDIA": ("allow_remote_media", mr_config.switch),
}

FOREVER = math.inf
