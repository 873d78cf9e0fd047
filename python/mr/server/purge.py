"""DELETE (or POST) /models/purge: unload and remove every model of the store (`mr purge`)."""

from __future__ import annotations

import asyncio
from typing import Annotated

from litestar import delete, post
from litestar.params import Parameter

from mr.jsontypes import JSON
from mr.server.context import Req, ServerContext, server_context


async def _purge(ctx: ServerContext, force: bool) -> JSON:
    from mr.store.errors import ConflictError
    from mr.store.purge import purge

    store = ctx.require_store()
    busy = [m.name for m in ctx.runner.loaded() if m.active]
    if busy and not force:
        raise ConflictError(f"models are serving requests ({', '.join(busy)}); try again or use force")
    await ctx.runner.unload(None)
    count = len(await asyncio.to_thread(store.list))
    lines = await asyncio.to_thread(purge, store)
    return {"message": f"Removed {count} models", "deleted": count, "lines": lines}


@delete("/models/purge", summary="Remove every model", tags=["Models"], status_code=200)
async def purge_models(request: Req, force: Annotated[bool, Parameter()] = False) -> JSON:
    return await _purge(server_context(request), force)


@post("/models/purge", include_in_schema=False, status_code=200)
async def purge_models_post(request: Req, force: Annotated[bool, Parameter()] = False) -> JSON:
    return await _purge(server_context(request), force)


HANDLERS = [purge_models, purge_models_post]
