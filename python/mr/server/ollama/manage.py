"""/api/version, tags, ps, show, pull, delete, embed, embeddings."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Annotated, Any

import msgspec
from litestar import Response, delete, get, post
from litestar.params import Body
from litestar.response import Stream

from mr.errors import ModelNotFoundError
from mr.jsontypes import JSON
from mr.server.context import Req, server_context
from mr.server.disconnect import until_disconnect
from mr.server.dmr import remove_model
from mr.server.embedding import Item, check_count
from mr.server.embedding import run as run_embeddings
from mr.server.errors import invalid
from mr.server.ollama import convert
from mr.server.ollama.protocol import (
    Details,
    EmbedRequest,
    LegacyEmbeddingsRequest,
    ModelRequest,
    PullRequest,
)
from mr.server.openai.embeddings import shape
from mr.server.progress import Event, error_message, thread_events

if TYPE_CHECKING:
    from mr.store import Store
    from mr.store.model import LocalModel

OLLAMA_API_VERSION = "0.9.0"  # the Ollama API level mr speaks (clients check it)
_encode = msgspec.json.Encoder().encode


def _json(obj: object) -> Response[bytes]:
    return Response(_encode(obj), media_type="application/json")


def _details(config: JSON) -> Details:
    arch = str(config.get("architecture") or "")
    return Details(family=arch, families=[arch] if arch else None,
                   parameter_size=str(config.get("parameters") or ""),
                   quantization_level=str(config.get("quantization") or ""))


def _name(tag: str) -> str:
    from mr.store import reference as refs

    ref = refs.parse(tag)
    if ref.digest or not ref.tag or ref.familiar.endswith(f":{ref.tag}"):
        return ref.familiar
    return f"{ref.familiar}:{ref.tag}"  # Ollama always shows the tag


def _digest(model_id: str) -> str:
    return model_id.removeprefix("sha256:")


def _tags(store: Store) -> list[JSON]:
    out = []
    for model in store.list():
        for tag in model.tags or [model.id]:
            name = _name(tag) if tag != model.id else model.short_id
            out.append({"name": name, "model": name, "size": model.size, "digest": _digest(model.id),
                        "modified_at": convert.rfc3339(model.created_ts),
                        "details": msgspec.to_builtins(_details(model.config))})
    return out


@get("/version", summary="Ollama API version", tags=["Ollama"])
async def version() -> dict[str, str]:
    return {"version": OLLAMA_API_VERSION}


@get("/tags", summary="Local models", tags=["Ollama"])
async def tags(request: Req) -> Response[bytes]:
    store = server_context(request).require_store()
    return _json({"models": await asyncio.to_thread(_tags, store)})


@get("/ps", summary="Loaded models", tags=["Ollama"])
async def ps(request: Req) -> Response[bytes]:
    runner = server_context(request).runner
    models = []
    for m in runner.loaded():
        expires = m.expires_at or (m.last_used + 10 * 365 * 86400)
        name = _name(m.resolved.tags[0]) if m.resolved.tags else m.name
        models.append({"name": name, "model": name, "size": m.estimate.total, "digest": _digest(m.id),
                       "details": msgspec.to_builtins(_details(m.resolved.config)),
                       "expires_at": convert.rfc3339(expires), "context_length": m.n_ctx,
                       "size_vram": m.estimate.total if m.on_gpu else 0})
    return _json({"models": models})


def _number(value: str) -> int | float | str:
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


@post("/show", summary="Model details", tags=["Ollama"], status_code=200)
async def show(request: Req, data: Annotated[ModelRequest, Body()]) -> Response[bytes]:
    store = server_context(request).require_store()
    if not data.target:
        raise invalid("model", "model is required")
    model = await asyncio.to_thread(store.resolve, data.target)
    gguf = model.config.get("gguf") or {}
    info = {k: _number(v) for k, v in gguf.items() if not k.startswith("tokenizer.chat_template")}
    template = gguf.get("tokenizer.chat_template", "")
    capabilities = await asyncio.to_thread(_capabilities, model)
    return _json({"modelfile": "", "parameters": "", "template": template, "license": "",
                  "details": msgspec.to_builtins(_details(model.config)), "model_info": info,
                  "capabilities": capabilities, "modified_at": convert.rfc3339(model.created_ts)})


def _capabilities(model: LocalModel) -> list[str]:
    """As `mr show` says them: completion, embedding or reranking; tools, reasoning; vision, audio."""
    from mr.store import summary

    return summary.capabilities(model, summary.chat_template(model))


@post("/pull", summary="Pull a model", tags=["Ollama"], status_code=200)
async def pull(request: Req, data: Annotated[PullRequest, Body()]) -> Response[Any]:
    store = server_context(request).require_store()
    if not data.target:
        raise invalid("model", "model is required")
    store.check_reference(data.target)
    from mr.store.pull import pull as pull_model  # the registry client loads on first use

    pulling = thread_events(lambda sink, guard: pull_model(store, data.target, on_progress=sink, guard=guard))
    if data.stream:
        return Stream(_pull_lines(pulling), media_type="application/x-ndjson")
    await until_disconnect(request, _last(pulling), lambda: None)  # leaving cancels the pull
    return Response(_encode({"status": "success"}), media_type="application/json")


async def _last(pulling: AsyncIterator[Event | BaseException]) -> None:
    async for item in pulling:
        if isinstance(item, BaseException):
            raise item  # its own status: 404 for a model the registry does not have


async def _pull_lines(pulling: AsyncIterator[Event | BaseException]) -> AsyncIterator[bytes]:
    yield _encode({"status": "pulling manifest"}) + b"\n"
    async for item in pulling:
        if isinstance(item, BaseException):
            yield _encode({"error": error_message(item)}) + b"\n"
            return
        layer = item.get("layer")
        if layer:
            yield _encode({"status": f"pulling {_digest(layer['id'])[:12]}", "digest": layer["id"],
                           "total": layer["size"], "completed": layer["current"]}) + b"\n"
    yield _encode({"status": "success"}) + b"\n"


@delete("/delete", summary="Delete a model", tags=["Ollama"], status_code=200)
async def delete_model(request: Req, data: Annotated[ModelRequest, Body()]) -> None:
    ctx = server_context(request)
    if not data.target:
        raise invalid("model", "model is required")
    try:
        await remove_model(ctx, data.target, force=True)
    except ModelNotFoundError:
        raise ModelNotFoundError(f"model '{data.target}' not found") from None


@post("/embed", summary="Embeddings", tags=["Ollama"], status_code=200)
async def embed(request: Req, data: Annotated[EmbedRequest, Body()]) -> Response[bytes]:
    ctx = server_context(request)
    texts: list[Item] = [data.input] if isinstance(data.input, str) else list(data.input)
    check_count(texts)
    clock = convert.Clock()
    async with await ctx.runner.acquire(data.model, convert.keep_alive(data.keep_alive)) as lease:
        clock.mark_loaded()
        matrix, n_tokens = await until_disconnect(
            request, run_embeddings(ctx, lease, texts, truncate=data.truncate), lambda: None)
    rows = shape(matrix, data.dimensions).tolist()
    t = clock.timings(n_tokens, 0)
    return _json({"model": data.model, "embeddings": rows, "total_duration": t.total_duration,
                  "load_duration": t.load_duration, "prompt_eval_count": n_tokens})


@post("/embeddings", summary="Embedding of one prompt (older API)", tags=["Ollama"], status_code=200)
async def embeddings(request: Req, data: Annotated[LegacyEmbeddingsRequest, Body()]) -> Response[bytes]:
    ctx = server_context(request)
    lease = await ctx.runner.acquire(data.model, convert.keep_alive(data.keep_alive))
    async with lease:
        matrix, _ = await until_disconnect(
            request, run_embeddings(ctx, lease, [data.prompt], truncate=True, normalize=False), lambda: None)
    return _json({"embedding": matrix[0].tolist()})


HANDLERS = [version, tags, ps, show, pull, delete_model, embed, embeddings]
