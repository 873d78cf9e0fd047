"""`mr serve`: the OpenAI / Docker Model Runner / Ollama compatible server, in the foreground.

Every flag has an MR_* environment twin (the flag wins). SIGINT or SIGTERM shut it down cleanly:
in-flight streams are ended (their clients get a finish and [DONE]), models are unloaded.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

import click
import uvicorn


def _duration(_ctx: click.Context, _param: click.Parameter, value: str | None) -> float | None:
    if value is None:
        return None
    from mr.runner import parse_duration

    try:
        return parse_duration(value, "--keep-alive")
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


@click.command()
@click.option("--host", default=None, help="Address to bind [MR_HOST; default 127.0.0.1].")
@click.option("--port", type=click.IntRange(0, 65535), default=None, help="Port [MR_PORT; default 12434].")
@click.option("--api-key", default=None, help="Require this key (Bearer or x-api-key) [MR_API_KEY].")
@click.option("--no-auth", is_flag=True, default=None,
              help="Listen beyond loopback without an API key; routes that change the store or "
                   "the runtime still answer loopback clients only [MR_NO_AUTH].")
@click.option("--parallel", type=click.IntRange(1, 256), default=None,
              help="Slots per model: requests decoded together [MR_PARALLEL; default 4].")
@click.option("--ctx-size", type=click.IntRange(1, 1 << 20), default=None,
              help="Context size per model, shared by its slots [MR_CTX_SIZE].")
@click.option("--keep-alive", callback=_duration, default=None,
              help="Idle time before a model unloads: 5m, 1h, 0, -1 = never [MR_KEEP_ALIVE; default 5m].")
@click.option("--models-dir", default=None, help="Model store root [MR_MODELS_DIR].")
@click.option("--max-queue", type=click.IntRange(0, 65536), default=None,
              help="Requests waiting per model beyond its slots; more get 503 [MR_MAX_QUEUE; default 64].")
@click.option("--memory-budget", callback=_size, default=None,
              help="Memory for loaded models, e.g. 8GiB [MR_MEMORY_BUDGET; default 80% of RAM].")
@click.option("--allowed-host", "allowed_hosts", multiple=True,
              help="Extra Host header value to accept (repeatable; * for any) [MR_ALLOWED_HOSTS].")
@click.option("--cors-origin", "cors_origins", multiple=True,
              help="Extra browser origin allowed by CORS (repeatable; * for any) [MR_CORS_ORIGINS].")
@click.option("--trusted-proxy", "trusted_proxies", multiple=True, callback=_networks,
              help="A balancer's address or network (repeatable) whose X-Forwarded-For/Forwarded "
                   "name the client; through any other proxy a client is remote "
                   "[MR_TRUSTED_PROXIES].")
@click.option("--threads", type=click.IntRange(0, 1024), default=None, help="CPU threads [MR_THREADS].")
@click.option("--gpu-layers", type=click.IntRange(-1, 100000), default=None,
              help="Layers offloaded to the GPU, -1 = all [MR_GPU_LAYERS].")
@click.option("--flash-attn", type=click.Choice(["auto", "on", "off"]), default=None,
              help="Flash attention; auto: on a CPU on for request contexts up to 1,024 tokens and "
                   "off above (faster there), on a GPU on [MR_FLASH_ATTN; default auto].")
@click.option("--tls-cert", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Serve HTTPS with this PEM certificate (chain) [MR_TLS_CERT].")
@click.option("--tls-key", type=click.Path(exists=True, dir_okay=False), default=None,
              help="The certificate's PEM private key [MR_TLS_KEY].")
@click.option("--request-log", "request_log_size", type=click.IntRange(0, 10000), default=None,
              help="Requests kept per model for `mr requests`; 0 = off [MR_REQUEST_LOG_SIZE; default 10].")
@click.option("--repack/--no-repack", default=None,
              help="Repack weights for the CPU's fastest kernels (AMX, AVX-512); RPC workers never "
                   "do, so --no-repack gives a split model the local model's exact answers "
                   "[MR_REPACK; default on].")
@click.option("--per-slot-kv/--shared-kv", default=None,
              help="One KV cache per slot (each request gets ctx-size / parallel tokens; idle "
                   "caches cost the others nothing) or one shared by the slots (any request may use "
                   "the whole context; prefixes shared without copies) [MR_PER_SLOT_KV; default shared].")
@click.option("--deterministic", is_flag=True, default=None,
              help="Batch-invariant answers: at temperature 0 (or with a seed) an answer depends only "
                   "on the model, the prompt and the sampling options, never on other requests, the "
                   "prefix cache, n or streaming; implies --per-slot-kv, flash attention and "
                   "--no-repack; CPU only [MR_DETERMINISTIC; default off].")
@click.option("--spec", type=click.Choice(["auto", "ngram", "off"]), default=None,
              help="Speculative decoding from each request's own prompt and answer (n-gram lookup): "
                   "auto drafts where the measured step costs say it pays, ngram always, off never "
                   "(a request's `prediction` still drafts); answers are the model's own either way "
                   "[MR_SPEC; default auto].")
@click.option("--spec-max", type=click.IntRange(0, 64), default=None,
              help="The longest draft, in tokens (after a long match or from a prediction; a "
                   "draft after a short match stops at 8) [MR_SPEC_MAX; default 64].")
@click.option("--draft-model", default=None,
              help="A smaller model with the same vocabulary (a store name or a GGUF path) that "
                   "drafts for the served models instead of n-gram lookup; checked at load, counted "
                   "in the memory budget [MR_DRAFT_MODEL].")
@click.option("--rpc", default=None,
              help="llama.cpp RPC workers (`mr worker`) that take a share of every model's layers: "
                   "HOST:PORT[,HOST:PORT...]; per model: mr configure --rpc [MR_RPC].")
@click.option("--rpc-allow", default=None,
              help="More RPC workers that `mr configure --rpc` may give a model while the server runs "
                   "(besides --rpc; no other is accepted): HOST:PORT[,HOST:PORT...] [MR_RPC_ALLOW].")
@click.option("--quiet", is_flag=True, help="No per-request log lines.")
def serve(**options: Any) -> None:
    """Serve the models of the store over HTTP (OpenAI, Docker Model Runner and Ollama APIs)."""
    settings = _settings(options)
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


def _settings(options: dict[str, Any]) -> Any:
    from mr.server import Settings

    try:
        settings = Settings.from_env()
    except ValueError as exc:
        raise click.UsageError(f"bad MR_* environment variable: {exc}") from None
    mapping = {"host": "host", "port": "port", "api_key": "api_key", "parallel": "parallel",
               "ctx_size": "ctx_size", "keep_alive": "keep_alive", "models_dir": "models_dir",
               "max_queue": "max_queue", "memory_budget": "memory_budget", "threads": "threads",
               "gpu_layers": "gpu_layers", "tls_cert": "tls_cert", "tls_key": "tls_key",
               "request_log_size": "request_log_size", "flash_attn": "flash_attn", "no_auth": "no_auth",
               "repack": "repack", "per_slot_kv": "per_slot_kv", "deterministic": "deterministic",
               "spec": "spec", "spec_max": "spec_max", "draft_model": "draft_model"}
    for option, field in mapping.items():
        if options.get(option) is not None:
            setattr(settings, field, options[option])
    if options.get("allowed_hosts"):
        settings.allowed_hosts = [*settings.allowed_hosts, *options["allowed_hosts"]]
    if options.get("cors_origins"):
        settings.cors_origins = [*settings.cors_origins, *options["cors_origins"]]
    if options.get("trusted_proxies"):
        settings.trusted_proxies = [*settings.trusted_proxies, *options["trusted_proxies"]]
    if options.get("quiet"):
        settings.log_requests = False
    if options.get("rpc") is not None:
        settings.rpc = _endpoints(options["rpc"])
    if options.get("rpc_allow") is not None:
        settings.rpc_allow = _endpoints(options["rpc_allow"], "--rpc-allow")
    if bool(settings.tls_cert) != bool(settings.tls_key):
        raise click.UsageError("--tls-cert and --tls-key go together")
    if settings.tls_cert:
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

    level = config.log_level() if "MR_LOG_LEVEL" in os.environ else "INFO"
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


def run(settings: Any) -> None:
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
    server = _Server(config, on_exit=lambda: (ctx.runner.drain(), cancel_transfers()))
    scheme = "https" if settings.tls_cert else "http"
    click.echo(f"mr serve: listening on {scheme}://{_url_host(settings.host)}:{settings.port} "
               f"(models in {settings.models_root()}, {settings.parallel} slots per model)", err=True)
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
