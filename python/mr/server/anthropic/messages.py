"""POST /v1/messages (streamed or not) and POST /v1/messages/count_tokens."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from litestar import Response, post
from litestar.params import Body

from mr.errors import MrError
from mr.server import chatcall
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
from mr.server.chatcall import ChatCall, Running, new_id
from mr.server.context import Req, server_context
from mr.server.errors import stream_error
from mr.server.openai.params import log_unknown_fields


@post("/messages", summary="Create a message (Anthropic)", tags=["Anthropic"], status_code=200)
async def create_message(request: Req, data: Annotated[MessagesRequest, Body()]) -> Response[Any]:
    ctx = server_context(request)
    await log_unknown_fields(request, MessagesRequest)
    call = convert.chat_call(data)
    running = await chatcall.start(ctx, call)
    if data.stream:
        return chatcall.event_stream(running, lambda r: _events(r, call))
    message = await chatcall.collect(request, running)
    reason, sequence = _stop(running, call)
    out = MessageOut(id=new_id("msg"), model=data.model, content=convert.content(message),
                     stop_reason=reason, stop_sequence=sequence, usage=convert.usage(running.stream.usage))
    return Response(encode(out), media_type="application/json")


@post("/messages/count_tokens", summary="Count the tokens of a message (Anthropic)", tags=["Anthropic"],
      status_code=200)
async def count_tokens(request: Req, data: Annotated[CountTokensRequest, Body()]) -> CountTokensOut:
    ctx = server_context(request)
    n = await chatcall.count_prompt(ctx, convert.prompt_call(data))
    return CountTokensOut(input_tokens=n)


def _stop(running: Running, call: ChatCall) -> tuple[StopReason, str | None]:
    """(stop_reason, the request's stop sequence that ended the text, if one did)."""
    stream = running.stream
    matched = stream.stream.stop_sequence
    sequence = matched if stream.finish_reason == "stop" and matched in call.stop else None
    return convert.stop_reason(stream.finish_reason, sequence), sequence


async def _events(running: Running, call: ChatCall) -> AsyncIterator[bytes]:
    stream = running.stream
    writer = EventWriter(new_id("msg"), call.model)
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
        for frame in writer.end(*_stop(running, call), usage):
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
