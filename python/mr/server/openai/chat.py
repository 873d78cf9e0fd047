"""POST /v1/chat/completions: streamed (SSE) and not, n choices, logprobs, tools, JSON output."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from functools import partial
from typing import Annotated, Any

from litestar import Response, post
from litestar.params import Body
from litestar.response import Stream

from mr.engine import AsyncChatStream, ChatDelta
from mr.server import sse
from mr.server.context import Req, ServerContext, server_context
from mr.server.disconnect import until_disconnect
from mr.server.generation import Chat, Direct, Prepared, Running, log_unknown_fields, start
from mr.server.metrics import StreamTimer
from mr.server.openai import params, results
from mr.server.openai.merge import finished, merge
from mr.server.openai.protocol import (
    ChatChoice,
    ChatCompletion,
    ChatCompletionRequest,
    ChatMessageOut,
    ChoiceLogprobs,
    DeltaOut,
)
from mr.server.openai.streams import sse_response
from mr.server.thinking import from_openai
from mr.server.wire import DirectWriter, capture_of, go_direct, wire_of


def prepare(data: ChatCompletionRequest) -> Prepared[Chat]:
    """The request's engine arguments: n choices, choice i sampled with seed + i."""
    budget = data.reasoning_budget_tokens
    if budget is None:
        budget = data.thinking_budget_tokens
    thinking = from_openai(data.reasoning_effort, data.chat_template_kwargs, budget)
    chat = Chat(params.messages(data.messages), params.chat_options(data), thinking)
    return Prepared(model=data.model, input=chat, sampling=partial(params.sampling, data), fields=data,
                    max_tokens=params.max_tokens(data, "max_completion_tokens", "max_tokens"),
                    stop=params.stops(data.stop), ignore_eos=data.ignore_eos, n=data.n,
                    logprobs=params.top_logprobs(data), prediction=params.prediction(data))


@post("/chat/completions", summary="Create a chat completion", tags=["OpenAI"], status_code=200)
async def chat_completions(request: Req, data: Annotated[ChatCompletionRequest, Body()]) -> Response[Any]:
    ctx = server_context(request)
    await log_unknown_fields(request, ChatCompletionRequest)
    prepared = prepare(data)
    include_usage = bool(data.stream_options and data.stream_options.include_usage)
    frames = sse.ChunkFrames(results.new_id("chatcmpl"), int(time.time()), data.model,
                             "chat.completion.chunk", include_usage)
    wire = wire_of(request.scope) if data.stream else None
    direct = Direct(frames, wire, sse.CONTENT_KEY, capture_of(request.scope)) if wire is not None else None
    running = await start(ctx, prepared, direct=direct)
    want_logprobs = prepared.logprobs is not None
    if data.stream:
        timer = ctx.metrics.stream_timer(running.direct is not None)
        if running.direct is not None:
            choices = _direct_frames(running, running.direct, timer)
        else:
            choices = _choice_frames(running.streams, frames, want_logprobs, timer)
        body = sse.guarded(sse_response(running, frames, include_usage, choices, timer), running.finish)
        return Stream(body, media_type=sse.MEDIA_TYPE, headers=sse.HEADERS)
    try:
        work = _collect(ctx, running.streams, data.model, want_logprobs, running.lease.model.name)
        completion = await until_disconnect(request, work, running.close)
    finally:
        running.finish()
    return Response(sse.encode(completion), media_type="application/json")


async def _collect(ctx: ServerContext, streams: list[AsyncChatStream], model: str,
                   want_logprobs: bool, label: str) -> ChatCompletion:
    started = time.perf_counter()
    messages = await asyncio.gather(*(s.collect() for s in streams))
    choices = []
    for i, (stream, message) in enumerate(zip(streams, messages, strict=True)):
        out = ChatMessageOut(role="assistant", content=message.content or None,
                             reasoning_content=message.reasoning_content or None,
                             tool_calls=results.tool_calls(message.tool_calls))
        if out.content is None and out.tool_calls is None:
            out.content = ""
        lp = ChoiceLogprobs(content=results.logprobs(stream.stream.logprobs)) if want_logprobs else None
        choices.append(ChatChoice(index=i, message=out, logprobs=lp,
                                  finish_reason=results.finish_reason(stream.finish_reason)))
    usage = results.usage([s.usage for s in streams])
    ctx.metrics.usage(label, usage)
    ctx.metrics.ttft(time.perf_counter() - started)
    return ChatCompletion(id=results.new_id("chatcmpl"), created=int(time.time()), model=model,
                          choices=choices, usage=usage)


async def _direct_frames(running: Running[AsyncChatStream], direct: Direct,
                         timer: StreamTimer) -> AsyncIterator[bytes]:
    """The role frames through ASGI, then the engine's frames straight to the socket, then each
    choice's finish frame through ASGI again as it ends."""
    streams, frames = running.streams, direct.frames
    for i in range(len(streams)):
        yield frames.choice(i, sse.ROLE_DELTA)
    # Resumed only once Litestar has sent the frames above: direct bytes follow them on the wire.
    write = DirectWriter(direct.wire, timer.times, running.close, direct.capture)
    go_direct([s.stream for s in streams], write, direct.wire)
    async for i in finished([s.stream for s in streams]):
        timer.engine_frames += write.engine_sent(streams[i].stream.wire_end)
        yield frames.choice(i, sse.EMPTY_DELTA, results.finish_reason(streams[i].finish_reason))


async def _choice_frames(streams: list[AsyncChatStream], frames: sse.ChunkFrames, want_logprobs: bool,
                         timer: StreamTimer) -> AsyncIterator[bytes]:
    sent_logprobs = [0] * len(streams)
    for i in range(len(streams)):
        yield frames.choice(i, sse.ROLE_DELTA)
    async for i, delta in merge(streams):
        stream = streams[i]
        if delta is None:
            yield frames.choice(i, sse.EMPTY_DELTA, results.finish_reason(stream.finish_reason))
            continue
        timer.token()
        lp = None
        if want_logprobs:
            lp, sent_logprobs[i] = _new_logprobs(stream, sent_logprobs[i])
        yield frames.choice(i, _delta_body(delta), None, lp)


def _delta_body(delta: ChatDelta) -> bytes:
    if not delta.tool_calls and not delta.reasoning_content:
        return sse.delta_content(delta.content)
    out = DeltaOut(content=delta.content or None, reasoning_content=delta.reasoning_content or None,
                   tool_calls=results.tool_call_deltas(delta.tool_calls))
    return sse.delta_obj(out)


def _new_logprobs(stream: AsyncChatStream, sent: int) -> tuple[bytes | None, int]:
    items = stream.stream.logprobs
    if len(items) <= sent:
        return None, sent
    content = results.logprobs(items[sent:])
    return sse.encode(ChoiceLogprobs(content=content)), len(items)
