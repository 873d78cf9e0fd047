"""create_app(settings): the Litestar application (OpenAI, Docker Model Runner and Ollama APIs)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from litestar import Litestar
from litestar.datastructures import State
from litestar.openapi import OpenAPIConfig

from mr import __version__
from mr.engine import EngineOptions
from mr.rpc import parse_endpoints
from mr.runner import Runner, RunnerConfig, SettingsFile, StoreSource
from mr.server import anthropic, dmr, ollama, openai, progress, purge, rerank, responses, tokenize
from mr.server.context import STATE_KEY, ServerContext
from mr.server.errors import EXCEPTION_HANDLERS
from mr.server.metrics import Metrics, metrics_route, observe_middleware
from mr.server.requestlog import RequestLog, requestlog_middleware, requests_route
from mr.server.security import security_middleware
from mr.server.settings import Settings

if TYPE_CHECKING:
    from mr.runner import ModelSource
    from mr.store import Store

log = logging.getLogger("mr.server")
DESCRIPTION = ("OpenAI (chat, completions, embeddings, Responses), Anthropic Messages, Docker Model Runner"
               " and Ollama APIs of mr")


def runner_config(settings: Settings) -> RunnerConfig:
    engine = EngineOptions(n_ctx=settings.ctx_size, n_slots=settings.parallel, max_queue=settings.max_queue,
                           n_threads=settings.threads, n_gpu_layers=settings.gpu_layers,
                           flash_attn=settings.flash_attn, repack=settings.repack,
                           idle_cache=settings.idle_cache, per_slot_kv=settings.per_slot_kv,
                           deterministic=settings.deterministic,
                           spec=settings.spec, spec_max=settings.spec_max,
                           draft_model=settings.draft_model or None, rpc=parse_endpoints(settings.rpc))
    return RunnerConfig(engine=engine, keep_alive=settings.keep_alive, memory_budget=settings.memory_budget,
                        load_timeout=settings.load_timeout)


def build_context(settings: Settings, store: Store | None = None,
                  source: ModelSource | None = None) -> ServerContext:
    """The store (settings.models_dir), the runner over it and the metrics."""
    if source is None:
        if store is None:
            from mr.store import Store

            store = Store(settings.models_root())
        source = StoreSource(store)
    runner = Runner(source, runner_config(settings), SettingsFile(settings.model_settings_path()))
    request_log = RequestLog(max(0, settings.request_log_size), max(256, settings.request_log_body_bytes),
                             secrets=(settings.api_key or "",), max_bytes=settings.request_log_max_bytes)
    return ServerContext(settings=settings, runner=runner, metrics=Metrics(runner), store=store,
                         request_log=request_log)


def create_app(settings: Settings | None = None, *, store: Store | None = None,
               source: ModelSource | None = None) -> Litestar:
    settings = settings or Settings()
    ctx = build_context(settings, store, source)

    @asynccontextmanager
    async def lifespan(_app: Litestar) -> AsyncIterator[None]:
        try:
            yield
        finally:
            progress.cancel_all()  # shutdown never waits on a pull
            await ctx.runner.close()  # unloads every model; in-flight streams were ended first

    return Litestar(
        route_handlers=[*openai.routers(), *anthropic.routers(), *responses.routers(), *dmr.HANDLERS,
                        *ollama.routers(), metrics_route, *purge.HANDLERS, *rerank.routers(),
                        *tokenize.routers(), requests_route],
        lifespan=[lifespan],
        state=State({STATE_KEY: ctx, responses.STORE_KEY: responses.store_for(settings)}),
        exception_handlers=anthropic.routing_errors(EXCEPTION_HANDLERS),
        middleware=[observe_middleware(ctx.metrics, settings.log_requests),
                    anthropic.anthropic_errors_middleware, security_middleware(settings),
                    requestlog_middleware(ctx.request_log)],
        request_max_body_size=settings.max_body_bytes,
        openapi_config=OpenAPIConfig(title="mr", version=__version__, path="/schema",
                                     description=DESCRIPTION),
        logging_config=None,
        debug=False,
    )
