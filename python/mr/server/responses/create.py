"""POST /v1/responses: one answer (streamed or not), kept in the store when `store` is true."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from litestar import Response, post
from litestar.params import Body

from mr.engine import AsyncChatStream
from mr.errors import MrError
from mr.jsontypes import JSON
from mr.server import generation
from mr.server.context import Req, server_context
from mr.server.errors import stream_error
from mr.server.generation import Running, log_unknown_fields
from mr.server.responses import convert, output
from mr.server.responses.events import ResponseEvents
from mr.server.responses.protocol import ResponseRequest
from mr.server.responses.store import Entry, ResponseNotFoundError, ResponseStore, store_of
from mr.server.sse import encode


class _Turn:
    """What a request adds to its chain: its input items, on top of the stored history."""

    def __init__(self, store: ResponseStore, req: ResponseRequest) -> None:
        self.store = store
        self.req = req
        self.history: list[JSON] = []
        if req.previous_response_id:
            previous = store.get(req.previous_response_id)
            if previous is None:
                raise ResponseNotFoundError(req.previous_response_id, "previous_response_id")
            self.history = previous.conversation
        self.items = convert.input_items(req)
        self.skeleton = output.Skeleton(req)

    def remember(self, response: JSON) -> None:
        if not self.req.store:
            return
        # a later turn refused for an image of this one says where it came from
        earlier = f"previous_response_id {response['id']}: input"
        conversation = [*self.history, *convert.messages(self.items, earlier),
                        *convert.messages(response["output"])]
        self.store.put(response["id"], Entry(response=response, input_items=self.items,
                                             conversation=conversation))


@post("/responses", summary="Create a response (OpenAI Responses API)", tags=["OpenAI"], status_code=200)
async def create_response(request: Req, data: Annotated[ResponseRequest, Body()]) -> Response[Any]:
    ctx = server_context(request)
    await log_unknown_fields(request, ResponseRequest)
    turn = _Turn(store_of(request), data)
    running = await generation.start(ctx, convert.prepare(data, turn.items, turn.history))
    if data.stream:
        return generation.event_stream(running, lambda r: _events(r, turn))
    message = await generation.collect(request, running)
    status, reason = output.status_of(running.stream.finish_reason)
    response = turn.skeleton.response(status, output.items(message, status == "incomplete"),
                                      running.stream.usage, reason)
    turn.remember(response)
    return Response(encode(response), media_type="application/json")


async def _events(running: Running[AsyncChatStream], turn: _Turn) -> AsyncIterator[bytes]:
    stream = running.stream
    events = ResponseEvents(turn.skeleton)
    timer = running.ctx.metrics.stream_timer()
    try:
        for frame in events.start():
            yield frame
        async for delta in stream:
            timer.token()
            for frame in events.delta(delta):
                yield frame
        if running.cut_short:
            yield events.failed({"code": "server_error", "message": "the server stopped this request"})
            return
        status, reason = output.status_of(stream.finish_reason)
        for frame in events.close("incomplete" if reason else "completed"):
            yield frame
        if not events.items:  # nothing was said: still one (empty) message, as when not streamed
            for frame in events.empty_message():
                yield frame
        response = turn.skeleton.response(status, events.items, running.count(), reason)
        turn.remember(response)
        for frame in events.end(status, response):
            yield frame
    except Exception as exc:
        yield events.failed(_error(exc))
    finally:
        timer.done()


def _error(exc: Exception) -> dict[str, str]:
    detail = stream_error(exc).error  # logs what is unexpected; paths scrubbed
    code = (exc.code if isinstance(exc, MrError) else None) or "server_error"
    return {"code": code, "message": detail.message}
