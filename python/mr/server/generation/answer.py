"""A started answer's way back to its client: collected whole, or streamed with the lease
released however the stream ends. The APIs only shape the bytes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping

from litestar.response import Stream

from mr.engine import AsyncChatStream, ChatMessage
from mr.errors import OverloadedError
from mr.server import sse
from mr.server.context import Req, ServerContext
from mr.server.disconnect import until_disconnect
from mr.server.generation import media
from mr.server.generation.prepared import Chat, Prepared
from mr.server.generation.start import Running, S
from mr.server.modeldefaults import model_defaults


async def collect(request: Req, running: Running[AsyncChatStream]) -> ChatMessage:
    """A one-answer chat's whole message, its usage counted; a client that leaves first cancels
    it (ClientGone), and one the server cut short is an overload error (try again)."""
    try:
        message = await until_disconnect(request, running.stream.collect(), running.close)
        if running.cut_short:
            raise OverloadedError("the server stopped this request before it finished; try again")
        running.count()
        return message
    finally:
        running.finish()


def event_stream(running: Running[S], body: Callable[[Running[S]], AsyncIterator[bytes]],
                 media_type: str = sse.MEDIA_TYPE, headers: Mapping[str, str] | None = sse.HEADERS) -> Stream:
    """A streamed response whose chunks `body` writes; the lease is released however it ends
    (also when the client is gone before the first byte)."""

    async def chunks() -> AsyncIterator[bytes]:
        try:
            async for chunk in body(running):
                yield chunk
        finally:
            running.finish()

    return Stream(sse.guarded(chunks(), running.finish), media_type=media_type, headers=headers)


async def count_prompt(ctx: ServerContext, prep: Prepared[Chat]) -> int:
    """How many tokens the rendered prompt of `prep` takes (what usage would report)."""
    limits = ctx.settings.media_limits()
    async with await ctx.runner.acquire(prep.model) as lease:
        llm = lease.llm
        media.check_accepted(prep.input.messages, llm.accepts, prep.model)
        messages = model_defaults(lease).apply_messages(prep.input.messages)  # as `start` renders them
        options = prep.input.thinking.apply(prep.input.options, lease.model.think)

        def count() -> int:  # the very tokens a request with these messages would submit, media's too
            return len(llm.prepare_chat(messages, options, limits).tokens)

        return await asyncio.to_thread(count)
