"""Docker Model Runner's model management API: /models, /models/create (NDJSON), tag, push, delete."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from typing import Annotated, Any

import msgspec
from litestar import Response, delete, get, post
from litestar.params import Body, Parameter
from litestar.response import Stream

from mr.errors import ModelNotFoundError
from mr.jsontypes import JSON
from mr.server import runtime
from mr.server.context import Req, ServerContext, server_context
from mr.server.disconnect import until_disconnect
from mr.server.errors import invalid
from mr.server.progress import error_message, first_event, thread_events

NDJSON = "application/x-ndjson"


class CreateRequest(msgspec.Struct, kw_only=True, rename={"from_": "from"}):
    from_: str


def _ndjson(obj: object) -> bytes:
    return msgspec.json.encode(obj) + b"\n"


@get("/models", summary="List local models", tags=["Models"])
async def list_models(request: Req) -> Response[bytes]:
    store = server_context(request).require_store()
    models = await asyncio.to_thread(store.list)
    return Response(_ndjson([m.to_dict() for m in models]).rstrip(), media_type="application/json")


@post("/models/create", summary="Pull a model (NDJSON progress)", tags=["Models"], status_code=200)
async def create_model(request: Req, data: Annotated[CreateRequest, Body()]) -> Stream:
    ctx = server_context(request)
    store = ctx.require_store()
    if not data.from_.strip():
        raise invalid("from", "from must name a model")
    store.check_reference(data.from_)
    from mr.store.pull import pull  # the registry client (oras, requests) loads on first use

    pulling = thread_events(lambda sink, guard: pull(store, data.from_, on_progress=sink, guard=guard))
    # A pull that fails at once gets its own status; a client that leaves meanwhile cancels it.
    first = await until_disconnect(request, first_event(pulling), lambda: None)

    async def events() -> AsyncIterator[bytes]:
        if first is None:
            yield _ndjson({"type": "success", "message": "Model pulled successfully"})
            return
        yield _ndjson(first)
        async for item in pulling:
            if isinstance(item, BaseException):
                yield _ndjson({"type": "error", "message": error_message(item)})
                return
            yield _ndjson(item)
        yield _ndjson({"type": "success", "message": "Model pulled successfully"})

    return Stream(events(), media_type=NDJSON)


def _name(raw: str) -> str:
    name = raw.lstrip("/")
    if not name:
        raise invalid("name", "a model name is required")
    return name


@get("/models/{name:path}", summary="Inspect a local model", tags=["Models"])
async def get_model(request: Req, name: Annotated[str, Parameter()]) -> Response[bytes]:
    store = server_context(request).require_store()
    model = await asyncio.to_thread(store.resolve, _name(name))
    return Response(_ndjson(model.to_dict()).rstrip(), media_type="application/json")


@delete("/models/{name:path}", summary="Delete a local model", tags=["Models"], status_code=200)
async def delete_model(request: Req, name: Annotated[str, Parameter()],
                       force: Annotated[bool, Parameter()] = False) -> JSON:
    ctx = server_context(request)
    lines = await remove_model(ctx, _name(name), force)
    return {"message": "\n".join(lines), "lines": lines}


async def remove_model(ctx: ServerContext, name: Annotated[str, Parameter()], force: bool) -> list[str]:
    """Unload it if idle (refuse while it serves requests), then remove it from the store."""
    from mr.store.errors import ConflictError

    store = ctx.require_store()
    model = await asyncio.to_thread(store.resolve, name)
    loaded = ctx.runner.find_loaded(model.id)
    if loaded is not None:
        if loaded.active and not force:
            raise ConflictError(f"model {name} is serving requests; try again or use force")
        await ctx.runner.unload([model.id])
    return await asyncio.to_thread(store.remove, name, force)


@post("/models/{name:path}", summary="Tag (…/tag?repo=R&tag=T) or push (…/push) a model",
      tags=["Models"], status_code=200)
async def model_action(request: Req, name: Annotated[str, Parameter()]) -> Response[Any]:
    ctx = server_context(request)
    path = _name(name)
    if path.endswith("/tag"):
        return await _tag(ctx, path.removesuffix("/tag"), request.query_params)
    if path.endswith("/push"):
        return _push(ctx, path.removesuffix("/push"))
    raise ModelNotFoundError(f"no such action: POST /models/{path}")


async def _tag(ctx: ServerContext, source: str, query: Mapping[str, str]) -> Response[bytes]:
    repo, tag = query.get("repo"), query.get("tag") or "latest"
    if not repo:
        raise invalid("repo", "repo is required (POST /models/NAME/tag?repo=R&tag=T)")
    store = ctx.require_store()
    await asyncio.to_thread(store.tag, source, f"{repo}:{tag}")
    return Response(_ndjson({"message": "Model tagged successfully"}).rstrip(), status_code=201,
                    media_type="application/json")


def _push(ctx: ServerContext, name: Annotated[str, Parameter()]) -> Stream:
    store = ctx.require_store()
    store.check_reference(name)
    from mr.store.push import push

    async def events() -> AsyncIterator[bytes]:
        async for item in thread_events(lambda sink, guard: push(store, name, on_progress=sink, guard=guard)):
            if isinstance(item, BaseException):
                yield _ndjson({"type": "error", "message": error_message(item)})
                return
            yield _ndjson(item)
        yield _ndjson({"type": "success", "message": "Model pushed successfully"})

    return Stream(events(), media_type=NDJSON)


HANDLERS = [list_models, create_model, get_model, delete_model, model_action, *runtime.HANDLERS]
