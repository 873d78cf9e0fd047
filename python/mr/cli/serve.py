"""`mr serve`: the OpenAI / Docker Model Runner / Ollama compatible server, in the foreground.

Some flags have an MR_* environment twin (mr.config.VARS; the flag wins). SIGINT or SIGTERM shut
it down cleanly: in-flight streams are ended (their clients get a finish and [DONE]), models are
unloaded.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import TYPE_CHECKING, Any, TypeVar

import click
import uvicorn

if TYPE_CHECKING:
    from mr.server import Settings

_F = TypeVar("_F", bound=Callable[..., object])


def _duration(_ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    if value is None:
        return None
    from mr.runner import parse_duration

    try:
        return parse_duration(value, param.opts[0])
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _size(_ctx: click.Context, _param: click.Parameter, value: str | None) -> int | None:
    if value is None:
        return None
    from mr.runner import parse_size

    try:
        return parse_size(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _networks(_ctx: click.Context, _param: click.Parameter, value: tuple[str, ...]) -> tuple[str, ...]:
    from mr.server.proxies import parse_networks

    try:
        parse_networks(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    return value


def _options(f: _F) -> _F:
    """`mr serve`'s flags. A flag with a variable names it in brackets (mr.config.VARS)."""
    for option in reversed(_OPTIONS):
        f = option(f)
    return f


_OPTIONS = [
    click.option("--host", default=None, help="Address to bind [MR_HOST; default 127.0.0.1]."),
    click.option("--port", type=click.IntRange(0, 65535), default=None,
                 help="Port [MR_PORT; default 12434]."),
    click.option("--api-key", default=None, help="Require this key (Bearer or x-api-key) [MR_API_KEY]."),
    click.option("--no-auth", is_flag=True, default=None,
                 help="Listen beyond loopback without an API key; routes that change the store or "
                      "the runtime still answer loopback clients only."),
    click.option("--parallel", type=click.IntRange(1, 256), default=None,
                 help="Slots per model: requests decoded together [MR_PARALLEL; default 4]."),
    click.option("--ctx-size", type=click.IntRange(1, 1 << 20), default=None,
                 help="Context size per model, shared by its slots [MR_CTX_SIZE]."),
    click.option("--keep-alive", callback=_duration, default=None,
                 help="Idle time before a model unloads: 5m, 1h, 0, -1 = never [MR_KEEP_ALIVE; default 5m]."),
    click.option("--models-dir", default=None, help="Model store root [MR_MODELS_DIR]."),
    click.option("--max-queue", type=click.IntRange(0, 65536), default=None,
                 help="Requests waiting per model beyond its slots; more get 503 [default 64]."),
    click.option("--memory-budget", callback=_size, default=None,
                 help="Memory for loaded models, e.g. 8GiB [MR_MEMORY_BUDGET; default 80% of RAM]."),
    click.option("--load-timeout", type=click.FloatRange(0, min_open=True), default=None,
                 help="Seconds a request waits for its model to load [default 300]."),
    click.option("--allowed-host", "allowed_hosts", multiple=True,
                 help="Extra Host header value to accept (repeatable; * for any)."),
    click.option("--cors-origin", "cors_origins", multiple=True,
                 help="Extra browser origin allowed by CORS (repeatable; * for any) [MR_CORS_ORIGINS]."),
    click.option("--trusted-proxy", "trusted_proxies", multiple=True, callback=_networks,
                 help="A balancer's address or network (repeatable) whose X-Forwarded-For/Forwarded "
                      "name the client; through any other proxy a client is remote [MR_TRUSTED_PROXIES]."),
    click.option("--max-body", "max_body_bytes", callback=_size, default=None,
                 help="The largest request body, e.g. 16MiB [default 16MiB]."),
    click.option("--header-timeout", type=click.FloatRange(0, min_open=True), default=None,
                 help="Seconds a client may take to send a request's headers [default 10]."),
    click.option("--body-timeout", type=click.FloatRange(0, min_open=True), default=None,
                 help="Seconds a client may take to send a request's body [default 120]."),
    click.option("--threads", type=click.IntRange(0, 1024), default=None,
                 help="CPU threads [default 0: llama.cpp's count of math cores]."),
    click.option("--gpu-layers", type=click.IntRange(-1, 100000), default=None,
                 help="Layers offloaded to the GPU, -1 = all [default -1]."),
    click.option("--flash-attn", type=click.Choice(["auto", "on", "off"]), default=None,
                 help="Flash attention; auto: on a CPU on for request contexts up to 1,024 tokens and "
                      "off above (faster there), on a GPU on [MR_FLASH_ATTN; default auto]."),
    click.option("--tls-cert", type=click.Path(exists=True, dir_okay=False), default=None,
                 help="Serve HTTPS with this PEM certificate (chain) [MR_TLS_CERT]."),
    click.option("--tls-key", type=click.Path(exists=True, dir_okay=False), default=None,
                 help="The certificate's PEM private key [MR_TLS_KEY]."),
    click.option("--request-log", "request_log_size", type=click.IntRange(0, 10000), default=None,
                 help="Requests kept per model for `mr requests`; 0 = off [default 10]."),
    click.option("--request-log-body", "request_log_body_bytes", callback=_size, default=None,
                 help="Each recorded request or response body is cut at this size [default 64KiB]."),
    click.option("--request-log-max", "request_log_max_bytes", callback=_size, default=None,
                 help="All recorded requests together, as JSON; the oldest go first [default 16MiB]."),
    click.option("--responses-ttl", callback=_duration, default=None,
                 help="How long a stored Responses API answer is kept: 1h, 0 = not kept [default 1h]."),
    click.option("--responses-max-entries", type=click.IntRange(0, 1 << 20), default=None,
                 help="Stored Responses API answers kept at most; the oldest go first [default 1000]."),
    click.option("--responses-max-bytes", callback=_size, default=None,
                 help="Memory for stored Responses API answers; the oldest go first [default 64MiB]."),
    click.option("--repack/--no-repack", default=None,
                 help="Repack weights for the CPU's fastest kernels (AMX, AVX-512); RPC workers never "
                      "do, so --no-repack gives a split model the local model's exact answers [default on]."),
    click.option("--idle-cache", type=click.FloatRange(0, 1), default=None,
                 help="Share (0-1) of a model's KV cells that finished conversations' caches may keep "
                      "once another request starts, so that their next turn skips its prefill; idle "
                      "cells slow the running requests [default 0]."),
    click.option("--per-slot-kv/--shared-kv", default=None,
                 help="One KV cache per slot (each request gets ctx-size / parallel tokens; idle "
                      "caches cost the others nothing) or one shared by the slots (any request may use "
                      "the whole context; prefixes shared without copies) [MR_PER_SLOT_KV; default shared]."),
    click.option("--deterministic", is_flag=True, default=None,
                 help="Batch-invariant answers: at temperature 0 (or with a seed) an answer depends only "
                      "on the model, the prompt and the sampling options, never on other requests, the "
                      "prefix cache, n or streaming; implies --per-slot-kv, flash attention and "
                      "--no-repack; CPU only [MR_DETERMINISTIC; default off]."),
    click.option("--spec", type=click.Choice(["auto", "ngram", "off"]), default=None,
                 help="Speculative decoding from each request's own prompt and answer (n-gram lookup): "
                      "auto drafts where the measured step costs say it pays, ngram always, off never "
                      "(a request's `prediction` still drafts); answers are the model's own either way "
                      "[MR_SPEC; default auto]."),
    click.option("--spec-max", type=click.IntRange(0, 64), default=None,
                 help="The longest draft, in tokens (after a long match or from a prediction; a "
                      "draft after a short match stops at 8) [default 64]."),
    click.option("--draft-model", default=None,
                 help="A smaller model with the same vocabulary (a store name or a GGUF path) that "
                      "drafts for the served models instead of n-gram lookup; checked at load, counted "
                      "in the memory budget."),
    click.option("--rpc", default=None,
                 help="llama.cpp RPC workers (`mr worker`) that take a share of every model's layers: "
                      "HOST:PORT[,HOST:PORT...]; per model: mr configure --rpc."),
    click.option("--rpc-allow", default=None,
                 help="More RPC workers that `mr configure --rpc` may give a model while the server runs "
                      "(besides --rpc; no other is accepted): HOST:PORT[,HOST:PORT...]."),
    click.option("--allow-remote-media", is_flag=True, default=None,
                 help="Fetch the http(s) image and audio URLs of requests (size and time capped); off, "
                      "media come inline (data: URLs, base64) and a URL is a 400 [MR_ALLOW_REMOTE_MEDIA; "
                      "default off]."),
    click.option("--quiet", is_flag=True, help="No per-request log lines."),
]


@click.command()
@_options
def serve(**options: Any) -> None:
    """Serve the models of the store over HTTP (OpenAI, Docker Model Runner and Ollama APIs)."""
    _start(_settings(options))


def serve_with(args: list[str], **fields: Any) -> None:
    """`mr serve ARGS` with Settings fields that no flag or variable sets: the experiment switches
    (direct_streams, engine_writes, loop) the bench's ceiling part turns off to measure them."""
    from mr.server import Settings

    with serve.make_context("mr serve", list(args)) as ctx:
        settings = _settings(ctx.params)
    for name, value in fields.items():
        if name not in Settings.__struct_fields__:
            raise click.UsageError(f"mr serve has no setting {name!r}")
        setattr(settings, name, value)
    _start(settings)


def _start(settings: Settings) -> None:
    _setup_logging(settings.log_requests)
    if not settings.is_loopback and not settings.api_key:
        if not settings.no_auth:
            raise click.UsageError(
                f"refusing to listen on {settings.host} without an API key: anyone who can reach "
                "this machine could use its models. Set --api-key (or MR_API_KEY), or pass "
                "--no-auth to serve inference openly (store and runtime changes stay loopback-only).")
        click.secho(f"WARNING: listening on {settings.host} without an API key (--no-auth): anyone "
                    "who can reach this machine can use its models; pulls, pushes, tags, deletes, "
                    "unloads and configuration answer loopback clients only. Clients must use an "
                    "allowed Host name (--allowed-host).", fg="red", bold=True, err=True)
    run(settings)


_LISTS = ("allowed_hosts", "cors_origins", "trusted_proxies")  # flags add to the variable's items
_NOT_FIELDS = ("quiet", "rpc", "rpc_allow", *_LISTS)


def _settings(options: dict[str, Any]) -> Settings:
    """The variables' settings (mr.server.Settings.from_env) with the flags given over them."""
    from mr.server import Settings

    try:
        settings = Settings.from_env()
    except ValueError as exc:
        raise click.UsageError(f"bad MR_* environment variable: {exc}") from None
    for option, value in options.items():
        if value is not None and option not in _NOT_FIELDS:
            setattr(settings, option, value)
    for option in _LISTS:
        if options.get(option):
            setattr(settings, option, [*getattr(settings, option), *options[option]])
    if options.get("quiet"):
        settings.log_requests = False
    if options.get("rpc") is not None:
        settings.rpc = _endpoints(options["rpc"])
    if options.get("rpc_allow") is not None:
        settings.rpc_allow = _endpoints(options["rpc_allow"], "--rpc-allow")
    if bool(settings.tls_cert) != bool(settings.tls_key):
        raise click.UsageError("--tls-cert and --tls-key go together")
    if settings.tls_cert and settings.tls_key:
        _check_tls(settings.tls_cert, settings.tls_key)
    return settings


def _endpoints(value: str, flag: str = "--rpc") -> list[str]:
    from mr.errors import InvalidArgumentError
    from mr.rpc import parse_endpoints

    try:
        return list(parse_endpoints(value))
    except InvalidArgumentError as exc:
        raise click.BadParameter(str(exc), param_hint=flag) from None


def _check_tls(cert: str, key: str) -> None:
    """Load the pair once here: a bad file is one line, not a traceback from inside uvicorn."""
    import ssl

    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise click.UsageError(f"cannot serve TLS with {cert} and {key}: {exc}") from None


def _setup_logging(requests: bool) -> None:
    from mr import config

    level = config.log_level(default="INFO")  # the server says what it does unless told otherwise
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    log_file = _log_file_handler()
    for name in ("mr.server", "mr.runner", "mr.access", "mr.engine", "mr.llama"):
        logger = logging.getLogger(name)
        logger.setLevel(level)
        logger.addHandler(handler)
        logger.addHandler(log_file)  # what `mr logs` shows
        logger.propagate = False
    if not requests:
        logging.getLogger("mr.access").setLevel(logging.WARNING)


def _log_file_handler() -> logging.Handler:
    from logging.handlers import RotatingFileHandler

    from mr.cli.logs_cmd import log_path

    path = log_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = RotatingFileHandler(path, maxBytes=5 << 20, backupCount=2, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    return handler


def run(settings: Settings) -> None:
    """Serve until SIGINT/SIGTERM; returns after a clean shutdown."""
    from mr.server import create_app
    from mr.server.context import STATE_KEY
    from mr.server.hygiene import guarded_protocol
    from mr.server.progress import cancel_all as cancel_transfers

    app = create_app(settings)
    ctx = app.state[STATE_KEY]
    config = uvicorn.Config(app, host=settings.host, port=settings.port, log_level="warning",
                            loop=settings.loop, access_log=False, lifespan="on", server_header=False,
                            # mr's own rule reads forwarding headers (mr.server.proxies); uvicorn's
                            # would believe any from 127.0.0.1 and hide the real peer from it.
                            proxy_headers=False,
                            timeout_graceful_shutdown=10, ssl_certfile=settings.tls_cert,
                            ssl_keyfile=settings.tls_key,
                            http=guarded_protocol(settings.header_timeout, settings.body_timeout,
                                                 settings.direct_streams, settings.engine_writes))

    def on_exit() -> None:
        ctx.runner.drain()
        cancel_transfers()

    server = _Server(config, on_exit=on_exit)
    scheme = "https" if settings.tls_cert else "http"
    click.echo(f"mr serve: listening on {scheme}://{_url_host(settings.host)}:{settings.port} "
               f"(models in {settings.models_root()}, {settings.parallel} slots per model)", err=True)
    if settings.allow_remote_media:
        click.echo("mr serve: http(s) image and audio URLs in requests are fetched (--allow-remote-media)",
                   err=True)
    if settings.rpc:
        click.echo(f"mr serve: model layers are split with the RPC workers {', '.join(settings.rpc)}",
                   err=True)
    server.run()
    click.echo("mr serve: stopped", err=True)


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


class _Server(uvicorn.Server):
    """uvicorn's Server, ending in-flight streams on the first signal and exiting 0 afterwards
    (uvicorn itself re-raises the signal once shut down, which would kill the process)."""

    def __init__(self, config: uvicorn.Config, on_exit: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_exit = on_exit

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        first = not self.should_exit
        super().handle_exit(sig, frame)
        if first:
            self._on_exit()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        handled = (signal.SIGINT, signal.SIGTERM)
        original = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)
