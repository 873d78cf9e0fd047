"""Runtime routes: /, /health, /version, /engines/status|ps|df|unload|configure."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated

import msgspec
from litestar import get, post
from litestar.params import Body

from mr import __version__
from mr.errors import InvalidArgumentError
from mr.jsontypes import JSON
from mr.rpc import parse_endpoints
from mr.runner import ModelSettings, parse_duration
from mr.runner.duration import format_duration
from mr.runner.settings import parse_switch
from mr.server.context import Req, server_context
from mr.server.errors import invalid


class UnloadRequest(msgspec.Struct, kw_only=True):
    all: bool = False
    models: list[str] = msgspec.field(default_factory=list)
    backend: str | None = None


class ConfigureRequest(msgspec.Struct, kw_only=True, rename={"context_size_dash": "context-size"}):
    model: str
    context_size: int | None = None
    context_size_dash: int | None = None  # DMR's CLI sends "context-size"
    parallel: int | None = None
    keep_alive: str | float | None = None
    mode: str | None = None  # completion | embedding | reranking
    think: bool | str | None = None  # true/false or "on"/"off"
    rpc: str | list[str] | None = None  # "host:port,host:port", a list, or "none" for local only


@get("/", summary="Liveness text", tags=["Runtime"], media_type="text/plain")
async def root() -> str:
    return "mr is running (Docker Model Runner compatible)"


@get("/health", summary="Health check", tags=["Runtime"])
async def health() -> dict[str, str]:
    return {"status": "ok"}


@get("/version", summary="Server version", tags=["Runtime"])
async def version() -> dict[str, str]:
    return {"version": __version__}


@get("/engines/status", summary="Engine status", tags=["Runtime"])
async def engines_status(request: Req) -> JSON:
    ctx = server_context(request)
    runner = ctx.runner
    engine = runner.config.engine
    ram, vram = runner.budget
    return {
        "running": True, "version": __version__, "backend": "llama.cpp",
        "uptime_s": round(time.time() - ctx.started_at, 1), "loaded_models": len(runner.loaded()),
        "memory": {"budget": runner.pool_size, "ram_budget": ram, "vram_budget": vram,
                   "used": runner.used_memory(), "workers": runner.worker_memory()},
        "rpc": list(engine.rpc),
        "defaults": {"parallel": engine.n_slots, "context_size": engine.n_ctx,
                     "keep_alive": format_duration(runner.config.keep_alive),
                     "kv_cache": "per-slot" if engine.kv_per_slot else "shared",
                     "deterministic": engine.deterministic, "spec": engine.spec, "spec_max": engine.spec_max},
    }


@get("/engines/ps", summary="Loaded models", tags=["Runtime"])
async def engines_ps(request: Req) -> list[JSON]:
    return server_context(request).runner.ps()


@get("/engines/df", summary="Disk usage of the store", tags=["Runtime"])
async def engines_df(request: Req) -> JSON:
    store = server_context(request).require_store()
    usage = await asyncio.to_thread(store.df)
    return {**usage.to_dict(), "default_backend_disk_usage": 0}


@post("/engines/unload", summary="Unload models", tags=["Runtime"], status_code=200)
async def engines_unload(request: Req, data: Annotated[UnloadRequest, Body()]) -> dict[str, int]:
    runner = server_context(request).runner
    if not data.all and not data.models:
        raise invalid("models", "give models to unload, or all: true")
    unloaded, draining = await runner.unload(None if data.all else data.models)
    # A busy model is not unloaded yet: it finishes its requests first (still in ps, still in
    # the memory budget), so it is reported apart.
    return {"unloaded_runners": unloaded, "draining_runners": draining}


@post("/engines/configure", summary="Persist per-model settings", tags=["Runtime"], status_code=200)
async def engines_configure(request: Req, data: Annotated[ConfigureRequest, Body()]) -> JSON:
    return await _configure(request, data)


@post("/engines/_configure", include_in_schema=False, status_code=200)
async def engines_configure_dmr(request: Req, data: Annotated[ConfigureRequest, Body()]) -> JSON:
    """Docker Model Runner's spelling of the same route."""
    return await _configure(request, data)


async def _configure(request: Req, data: ConfigureRequest) -> JSON:
    ctx = server_context(request)
    runner = ctx.runner
    allowed = {*runner.config.engine.rpc, *ctx.settings.rpc_allow}
    settings = ModelSettings(context_size=data.context_size or data.context_size_dash,
                             parallel=data.parallel, keep_alive=parse_duration(data.keep_alive),
                             mode=data.mode, think=parse_switch(data.think, "think"),
                             rpc=_rpc(data.rpc, allowed))
    merged = await runner.configure(data.model, settings.validate())
    return {"model": data.model, "context_size": merged.context_size, "parallel": merged.parallel,
            "keep_alive": format_duration(merged.keep_alive) or None, "mode": merged.mode,
            "think": merged.think, "rpc": merged.rpc}


def _rpc(value: str | list[str] | None, allowed: set[str]) -> list[str] | None:
    """The workers a configure request names (checked); None when it names none. Only workers the
    server was started with (--rpc, --rpc-allow) are accepted: a model's weights and every
    request's activations go to its workers, over a protocol with no authentication."""
    if value is None:
        return None
    try:
        endpoints = list(parse_endpoints(value))
    except InvalidArgumentError as exc:
        raise invalid("rpc", str(exc)) from None
    refused = [e for e in endpoints if e not in allowed]
    if refused:
        raise invalid("rpc", f"RPC worker {refused[0]} is not one this server was started with: "
                             f"allowed are {', '.join(sorted(allowed)) or 'none'} (mr serve --rpc, "
                             "--rpc-allow name them)")
    return endpoints


HANDLERS = [root, health, version, engines_status, engines_ps, engines_df, engines_unload, engines_configure,
            engines_configure_dmr]
