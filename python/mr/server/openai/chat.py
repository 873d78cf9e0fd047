"""POST /v1/chat/completions: streamed (SSE) and not, n choices, logprobs, tools, JSON output."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from typing import Annotated, Any

from litestar import Response, post
from litestar.params import Body
from litestar.response import Stream

from mr.engine import AsyncChatStream, ChatDelta, ChatOptions, ChatPrompt
from mr.runner import Lease
from mr.server import sse
from mr.server.context import Req, ServerContext, server_context
from mr.server.disconnect import until_disconnect
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
from mr.server.openai.streams import asubmit_all, finish_all, sse_response
from mr.server.thinking import Thinking, from_openai
from mr.server.wire import Capture, DirectWriter, Wire, capture_of, engine_wire, go_direct, wire_of


@dataclass(frozen=True)
class _Prepared:
    """A request's engine arguments, validated before any model is touched."""

    messages: list[dict[str, Any]]
    options: ChatOptions | None
    max_tokens: int
    stop: list[str]
    logprobs: int | None
    thinking: Thinking
    prediction: str | None  # Predicted Outputs: a draft source for every choice


def _prepare(data: ChatCompletionRequest) -> _Prepared:
    budget = data.reasoning_budget_tokens
    if budget is None:
        budget = data.thinking_budget_tokens
    return _Prepared(messages=params.messages(data.messages), options=params.chat_options(data),
                     max_tokens=params.max_tokens(data, "max_completion_tokens", "max_tokens"),
                     stop=params.stops(data.stop), logprobs=params.top_logprobs(data),
                     thinking=from_openai(data.reasoning_effort, data.chat_template_kwargs, budget),
                     prediction=params.prediction(data))


async def _submit(lease: Lease, data: ChatCompletionRequest, p: _Prepared, max_queue: int,
                  direct: tuple[sse.ChunkFrames, Wire] | None,
                  engine: tuple[int, int] | None = None) -> tuple[list[AsyncChatStream], bool]:
    """One engine stream per choice (seed + i), and whether they stream direct (mr.server.wire):
    plain content with no logprobs, on a connection that allows it. Rendering, the grammar and
    tokenizing run in a worker thread, once: they may take long enough to stall every other
    client of the loop."""
    llm = lease.llm
    defaults = lease.model.resolved.defaults  # the model's own, where the request says nothing
    if defaults is not None:
        p = replace(p, messages=defaults.apply_messages(p.messages), stop=defaults.apply_stop(p.stop),
                    max_tokens=defaults.apply_max_tokens(p.max_tokens))
    options = p.thinking.apply(p.options, lease.model.think)
    try:
        params.check_fits(data.n, lease.model.n_slots, max_queue, "n")
        prompt: ChatPrompt = await asyncio.to_thread(llm.prepare_chat, p.messages, options)
    except BaseException:
        lease.release()
        raise
    if not prompt.fmt.plain or p.logprobs is not None:
        direct = engine = None

    def start(i: int) -> Callable[[], AsyncChatStream]:
        sampling = params.sampling(data, llm.model.n_vocab, i)
        if defaults is not None:
            sampling = defaults.apply_sampling(sampling, data)
        frame = direct[0].text_frame(i, sse.CONTENT_KEY, direct[1].chunked) if direct else None
        return lambda: llm.achat(prompt, sampling, max_tokens=p.max_tokens, stop=p.stop,
                                 ignore_eos=data.ignore_eos, logprobs=p.logprobs, frame=frame, wire=engine,
                                 prediction=p.prediction)

    streams = await asubmit_all(lease, (start(i) for i in range(data.n)), off_loop=bool(prompt.fmt.grammar))
    return streams, direct is not None


@post("/chat/completions", summary="Create a chat completion", tags=["OpenAI"], status_code=200)
async def chat_completions(request: Req, data: Annotated[ChatCompletionRequest, Body()]) -> Response[Any]:
    ctx = server_context(request)
    await params.log_unknown_fields(request, ChatCompletionRequest)
    prepared = _prepare(data)
    lease = await ctx.runner.acquire(data.model)
    include_usage = bool(data.stream_options and data.stream_options.include_usage)
    frames = sse.ChunkFrames(results.new_id("chatcmpl"), int(time.time()), data.model,
                             "chat.completion.chunk", include_usage)
    wire = wire_of(request.scope) if data.stream else None
    engine = engine_wire(wire, data.n, capture_of(request.scope))
    streams, direct = await _submit(lease, data, prepared, ctx.runner.config.max_queue,
                                    (frames, wire) if wire is not None else None, engine)
    want_logprobs = prepared.logprobs is not None
    if data.stream:
        timer = ctx.metrics.stream_timer(direct)
        if direct:
            assert wire is not None
            choices = _direct_frames(streams, frames, wire, timer, capture_of(request.scope))
        else:
            choices = _choice_frames(streams, frames, want_logprobs, timer)
        body = sse_response(ctx, lease, streams, frames, include_usage, choices, timer)
        body = sse.guarded(body, lambda: finish_all(lease, streams))
        return Stream(body, media_type=sse.MEDIA_TYPE, headers=sse.HEADERS)
    try:
        work = _collect(ctx, streams, data.model, want_logprobs, lease.model.name)
        completion = await until_disconnect(request, work, lambda: [s.close() for s in streams])
    finally:
        finish_all(lease, streams)
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


async def _direct_frames(streams: list[AsyncChatStream], frames: sse.ChunkFrames, wire: Wire,
                         timer: StreamTimer, capture: Capture | None) -> AsyncIterator[bytes]:
    """The role frames through ASGI, then the engine's frames straight to the socket, then each
    choice's finish frame through ASGI again as it ends."""
    for i in range(len(streams)):
        yield frames.choice(i, sse.ROLE_DELTA)
    # Resumed only once Litestar has sent the frames above: direct bytes follow them on the wire.
    write = DirectWriter(wire, timer.times, lambda: [s.close() for s in streams], capture)
    go_direct([s.stream for s in streams], write, wire)
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
