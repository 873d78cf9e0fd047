"""POST /v1/messages (streamed or not) and POST /v1/messages/count_tokens."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from litestar import Response, post
from litestar.params import Body

from mr.engine import AsyncChatStream
from mr.errors import MrError
from mr.server import generation
from mr.server.anthropic import convert
from mr.server.anthropic.envelope import error_type
from mr.server.anthropic.events import EventWriter, error_frame
from mr.server.anthropic.protocol import (
    CountTokensOut,
    CountTokensRequest,
    MessageOut,
    MessagesRequest,
    StopReason,
    encode,
)
from mr.server.context import Req, server_context
from mr.server.errors import stream_error
from mr.server.generation import Chat, Prepared, Running, log_unknown_fields, new_id


@post("/messages", summary="Create a message (Anthropic)", tags=["Anthropic"], status_code=200)
async def create_message(request: Req, data: Annotated[MessagesRequest, Body()]) -> Response[Any]:
    ctx = server_context(request)
    await log_unknown_fields(request, MessagesRequest)
    prepared = convert.prepare(data)
    running = await generation.start(ctx, prepared)
    if data.stream:
        return generation.event_stream(running, lambda r: _events(r, prepared))
    message = await generation.collect(request, running)
    reason, sequence = _stop(running, prepared)
    out = MessageOut(id=new_id("msg"), model=data.model, content=convert.content(message),
                     stop_reason=reason, stop_sequence=sequence, usage=convert.usage(running.stream.usage))
    return Response(encode(out), media_type="application/json")


@post("/messages/count_tokens", summary="Count the tokens of a message (Anthropic)", tags=["Anthropic"],
      status_code=200)
async def count_tokens(request: Req, data: Annotated[CountTokensRequest, Body()]) -> CountTokensOut:
    ctx = server_context(request)
    n = await generation.count_prompt(ctx, Prepared(model=data.model, input=convert.chat(data)))
    return CountTokensOut(input_tokens=n)


def _stop(running: Running[AsyncChatStream], prepared: Prepared[Chat]) -> tuple[StopReason, str | None]:
    """(stop_reason, the request's stop sequence that ended the text, if one did)."""
    stream = running.stream
    matched = stream.stream.stop_sequence
    sequence = matched if stream.finish_reason == "stop" and matched in prepared.stop else None
    return convert.stop_reason(stream.finish_reason, sequence), sequence


async def _events(running: Running[AsyncChatStream], prepared: Prepared[Chat]) -> AsyncIterator[bytes]:
    stream = running.stream
    writer = EventWriter(new_id("msg"), prepared.model)
    timer = running.ctx.metrics.stream_timer()
    try:
        async for delta in stream:
            timer.token()
            if not writer.started:
                yield writer.start(stream.usage)  # after prefill, so input_tokens is known
            for frame in writer.delta(delta):
                yield frame
        if not writer.started:
            yield writer.start(stream.usage)
        if running.cut_short:
            yield error_frame("overloaded_error", "the server stopped this request before it finished")
            return
        usage = running.count()
        for frame in writer.end(*_stop(running, prepared), usage):
            yield frame
    except Exception as exc:
        yield _error(exc)
    finally:
        timer.done()


def _error(exc: Exception) -> bytes:
    detail = stream_error(exc).error  # logs what is unexpected; paths scrubbed
    status = exc.http_status if isinstance(exc, MrError) else 500
    return error_frame(error_type(529 if status == 503 else status), detail.message)


HANDLERS = [create_message, count_tokens]
