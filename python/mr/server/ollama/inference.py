"""/api/chat and /api/generate: NDJSON streaming (the default) or one JSON object."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any, TypeVar

import msgspec
from litestar import Response, post
from litestar.params import Body

from mr.engine import AsyncChatStream, AsyncStream, ChatDelta
from mr.jsontypes import JSON
from mr.server import generation
from mr.server.context import Req, ServerContext, server_context
from mr.server.disconnect import until_disconnect
from mr.server.errors import invalid, stream_error
from mr.server.generation import Chat, Prepared, Running, Text, same_sampling, tool_options
from mr.server.ollama import convert, ignored
from mr.server.ollama.protocol import ChatRequest, GenerateRequest, Options
from mr.server.thinking import from_ollama

_S = TypeVar("_S", AsyncChatStream, AsyncStream)

NDJSON = "application/x-ndjson"
_encode = msgspec.json.Encoder().encode


def _line(obj: object) -> bytes:
    return _encode(obj) + b"\n"


async def _load_only(ctx: ServerContext, model: str, keep: float | None, chat: bool) -> Response[bytes]:
    """An empty request loads the model; with keep_alive 0 it unloads it."""
    if keep == 0:
        await ctx.runner.unload([model])
        reason = "unload"
    else:
        await ctx.runner.load(model, keep)
        reason = "load"
    body: JSON = {"model": model, "created_at": convert.now_rfc3339(), "done": True,
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
    options = tool_options(data.tools, None, None, convert.response_format(data.format))  # no tool_choice
    prepared = _prepare(data.model, Chat(messages, options, from_ollama(data.think)), data.options, keep)
    clock = convert.Clock()
    running = await generation.start(ctx, prepared, loaded=clock.mark_loaded)
    extra = ignored.headers(ignored.of_chat(data), request.url.path)
    return await _respond(request, running, data.model, data.stream, clock, True, extra)


@post("/generate", summary="Ollama generate", tags=["Ollama"], status_code=200)
async def generate(request: Req, data: Annotated[GenerateRequest, Body()]) -> Response[Any]:
    ctx = server_context(request)
    keep = convert.keep_alive(data.keep_alive)
    if not data.prompt and not data.system and not data.images:
        return await _load_only(ctx, data.model, keep, chat=False)
    options = tool_options(None, None, None, convert.response_format(data.format))
    clock = convert.Clock()

    async def respond(running: Running[_S]) -> Response[Any]:
        extra = ignored.headers(ignored.of_generate(data), request.url.path)
        return await _respond(request, running, data.model, data.stream, clock, False, extra)

    if data.raw:  # the caller wrote the template's markers themselves: they are tokens (no system)
        if data.images:  # a raw prompt has no place the projector's tokens could go: never dropped
            raise invalid("images", "images need the model's chat template: they cannot be sent with "
                                    "raw: true")
        text = data.prompt
        raw = _prepare(data.model, Text(lambda llm: [llm.tokenize(text, True, True)]), data.options, keep)
        return await respond(await generation.start(ctx, raw, loaded=clock.mark_loaded))
    messages = ([{"role": "system", "content": data.system}] if data.system else []) + \
        [{"role": "user", "content": convert.with_images(data.prompt, data.images, "images")}]
    prepared = _prepare(data.model, Chat(messages, options, from_ollama(data.think)), data.options, keep)
    return await respond(await generation.start(ctx, prepared, loaded=clock.mark_loaded))


def _prepare(model: str, source: Chat | Text, options: Options | None, keep: float | None) -> Prepared[Any]:
    """`options` (Ollama's: sampling, num_predict, stop) win over the model's own defaults."""
    sampling, limit, stop = convert.sampling(options)
    return Prepared(model=model, input=source, sampling=same_sampling(sampling), fields=options,
                    max_tokens=limit, stop=stop, keep_alive=keep)


async def _respond(request: Req, running: Running[_S], model: str,
                   streaming: bool, clock: convert.Clock, chat: bool,
                   headers: dict[str, str] | None) -> Response[Any]:
    if streaming:
        return generation.event_stream(running, lambda r: _lines(r, model, clock, chat), NDJSON, headers)
    stream = running.stream
    try:
        text = await until_disconnect(request, _collect(stream), running.close)
    finally:
        running.finish()
    body = _final(stream, model, clock, chat, text)
    running.count()
    return Response(_encode(body), media_type="application/json", headers=headers)


async def _collect(stream: AsyncStream | AsyncChatStream) -> str:
    if isinstance(stream, AsyncChatStream):
        return (await stream.collect()).content
    return await stream.text()


def _final(stream: AsyncStream | AsyncChatStream, model: str, clock: convert.Clock, chat: bool,
           text: str) -> JSON:
    usage = stream.usage
    body: JSON = {"model": model, "created_at": convert.now_rfc3339()}
    if chat:
        assert isinstance(stream, AsyncChatStream)
        message: JSON = {"role": "assistant", "content": text}
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


async def _lines(running: Running[_S], model: str,
                 clock: convert.Clock, chat: bool) -> AsyncIterator[bytes]:
    stream = running.stream
    try:
        async for piece in stream:
            clock.token()
            text = piece.content if isinstance(piece, ChatDelta) else piece
            thinking = piece.reasoning_content if isinstance(piece, ChatDelta) else ""
            if not text and not thinking:
                continue
            body: JSON = {"model": model, "created_at": convert.now_rfc3339(), "done": False}
            extra = {"thinking": thinking} if thinking else {}
            body.update({"message": {"role": "assistant", "content": text, **extra}} if chat
                        else {"response": text, **extra})
            yield _line(body)
        running.count()
        yield _line(_final(stream, model, clock, chat, ""))
    except Exception as exc:
        yield _line({"error": stream_error(exc).error.message})
