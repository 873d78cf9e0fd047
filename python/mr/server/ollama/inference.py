"""/api/chat and /api/generate: NDJSON streaming (the default) or one JSON object."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated, Any

import msgspec
from litestar import Response, post
from litestar.params import Body
from litestar.response import Stream

from mr.engine import AsyncChatStream, AsyncStream, ChatDelta
from mr.runner import Lease
from mr.server.context import Req, ServerContext, server_context
from mr.server.disconnect import until_disconnect
from mr.server.errors import invalid, stream_error
from mr.server.modeldefaults import model_defaults
from mr.server.ollama import convert, ignored
from mr.server.ollama.protocol import ChatRequest, GenerateRequest
from mr.server.openai.streams import asubmit_all
from mr.server.sse import guarded
from mr.server.thinking import from_ollama

NDJSON = "application/x-ndjson"
_encode = msgspec.json.Encoder().encode


def _line(obj: Any) -> bytes:
    return _encode(obj) + b"\n"


async def _load_only(ctx: ServerContext, model: str, keep: float | None, chat: bool) -> Response[bytes]:
    """An empty request loads the model; with keep_alive 0 it unloads it."""
    if keep == 0:
        await ctx.runner.unload([model])
        reason = "unload"
    else:
        await ctx.runner.load(model, keep)
        reason = "load"
    body: dict[str, Any] = {"model": model, "created_at": convert.now_rfc3339(), "done": True,
                            "done_reason": reason}
    body.update({"message": {"role": "assistant", "content": ""}} if chat else {"response": ""})
    return Response(_encode(body), media_type="application/json")


@post("/chat", summary="Ollama chat", tags=["Ollama"], status_code=200)
async def chat(request: Req, data: Annotated[ChatRequest, Body()]) -> Response[Any]:
    ctx = server_context(request)
    keep = convert.keep_alive(data.keep_alive)
    if not data.messages:
        return await _load_only(ctx, data.model, keep, chat=True)
    messages = convert.messages(data.messages)
    options = convert.chat_options(data.tools, data.format)
    thinking = from_ollama(data.think)
    sampling, limit, stop = convert.sampling(data.options)
    clock = convert.Clock()
    lease = await ctx.runner.acquire(data.model, keep)
    clock.mark_loaded()
    own = model_defaults(lease)  # the model's own, where the request says nothing
    sampling, limit, stop = own.apply(data.options, sampling, limit, stop)
    try:
        options = thinking.apply(options, lease.model.think)
        prompt = await asyncio.to_thread(lease.llm.prepare_chat, own.apply_messages(messages), options)
    except BaseException:
        lease.release()
        raise
    start = [lambda: lease.llm.achat(prompt, sampling, max_tokens=limit, stop=stop)]
    [stream] = await asubmit_all(lease, start, off_loop=bool(prompt.fmt.grammar))
    extra = ignored.headers(ignored.of_chat(data), request.url.path)
    return await _respond(request, ctx, lease, stream, data.model, data.stream, clock, True, extra)


@post("/generate", summary="Ollama generate", tags=["Ollama"], status_code=200)
async def generate(request: Req, data: Annotated[GenerateRequest, Body()]) -> Response[Any]:
    ctx = server_context(request)
    keep = convert.keep_alive(data.keep_alive)
    if data.images:
        raise invalid("images", "images are not supported by this server")
    if not data.prompt and not data.system:
        return await _load_only(ctx, data.model, keep, chat=False)
    options = convert.chat_options(None, data.format)
    sampling, limit, stop = convert.sampling(data.options)
    clock = convert.Clock()
    lease = await ctx.runner.acquire(data.model, keep)
    clock.mark_loaded()
    own = model_defaults(lease)  # the model's own, where the request says nothing
    sampling, limit, stop = own.apply(data.options, sampling, limit, stop)
    try:
        llm = lease.llm
        stream: AsyncStream | AsyncChatStream
        if data.raw:  # the caller wrote the template's markers themselves: they are tokens (no system)
            tokens = await asyncio.to_thread(llm.tokenize, data.prompt, True, True)
            stream = llm.agenerate(tokens, sampling, max_tokens=limit, stop=stop)
        else:
            messages = own.apply_messages(([{"role": "system", "content": data.system}] if data.system
                                           else []) + [{"role": "user", "content": data.prompt}])
            options = from_ollama(data.think).apply(options, lease.model.think)
            prompt = await asyncio.to_thread(llm.prepare_chat, messages, options)
            start = [lambda: llm.achat(prompt, sampling, max_tokens=limit, stop=stop)]
            [stream] = await asubmit_all(lease, start, off_loop=bool(prompt.fmt.grammar))  # tracked
    except BaseException:
        lease.release()
        raise
    lease.track(stream)
    extra = ignored.headers(ignored.of_generate(data), request.url.path)
    return await _respond(request, ctx, lease, stream, data.model, data.stream, clock, False, extra)


async def _respond(request: Req, ctx: ServerContext, lease: Lease, stream: AsyncStream | AsyncChatStream,
                   model: str, streaming: bool, clock: convert.Clock, chat: bool,
                   headers: dict[str, str] | None) -> Response[Any]:
    if streaming:
        body = guarded(_lines(ctx, lease, stream, model, clock, chat), lambda: _finish(lease, stream))
        return Stream(body, media_type=NDJSON, headers=headers)
    try:
        text = await until_disconnect(request, _collect(stream), stream.close)
    finally:
        _finish(lease, stream)
    body = _final(stream, model, clock, chat, text)
    ctx.metrics.tokens(lease.model.name, stream.usage.prompt_tokens, stream.usage.completion_tokens)
    return Response(_encode(body), media_type="application/json", headers=headers)


async def _collect(stream: AsyncStream | AsyncChatStream) -> str:
    if isinstance(stream, AsyncChatStream):
        return (await stream.collect()).content
    return await stream.text()


def _finish(lease: Lease, stream: AsyncStream | AsyncChatStream) -> None:
    stream.close()
    lease.untrack(stream)
    lease.release()


def _final(stream: AsyncStream | AsyncChatStream, model: str, clock: convert.Clock, chat: bool,
           text: str) -> dict[str, Any]:
    usage = stream.usage
    body: dict[str, Any] = {"model": model, "created_at": convert.now_rfc3339()}
    if chat:
        assert isinstance(stream, AsyncChatStream)
        message: dict[str, Any] = {"role": "assistant", "content": text}
        if stream.message.tool_calls:
            message["tool_calls"] = convert.tool_calls(stream.message.tool_calls)
        if stream.message.reasoning_content:
            message["thinking"] = stream.message.reasoning_content
        body["message"] = message
    else:
        body["response"] = text
    body.update(done=True, done_reason=convert.done_reason(stream.finish_reason))
    body.update(msgspec.to_builtins(clock.timings(usage.prompt_tokens, usage.completion_tokens)))
    return body


async def _lines(ctx: ServerContext, lease: Lease, stream: AsyncStream | AsyncChatStream, model: str,
                 clock: convert.Clock, chat: bool) -> AsyncIterator[bytes]:
    try:
        async for piece in stream:
            clock.token()
            text = piece.content if isinstance(piece, ChatDelta) else piece
            thinking = piece.reasoning_content if isinstance(piece, ChatDelta) else ""
            if not text and not thinking:
                continue
            body: dict[str, Any] = {"model": model, "created_at": convert.now_rfc3339(), "done": False}
            extra = {"thinking": thinking} if thinking else {}
            body.update({"message": {"role": "assistant", "content": text, **extra}} if chat
                        else {"response": text, **extra})
            yield _line(body)
        ctx.metrics.tokens(lease.model.name, stream.usage.prompt_tokens, stream.usage.completion_tokens)
        yield _line(_final(stream, model, clock, chat, ""))
    except Exception as exc:
        yield _line({"error": stream_error(exc).error.message})
    finally:
        _finish(lease, stream)
