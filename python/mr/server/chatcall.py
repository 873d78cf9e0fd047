"""One chat request on the engine's fast path, for the routes that are not OpenAI chat itself.

Anthropic Messages and OpenAI Responses translate their bodies into the engine's chat arguments
(OpenAI-shaped messages, ChatOptions, SamplingOptions) and then share this: the lease (lazy load,
queue cap), one `achat` stream tracked for shutdown, collection that a client disconnect cancels,
token metrics, and the count of a rendered prompt. Their own modules only shape the wire format.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from litestar.response import Stream

from mr.engine import AsyncChatStream, ChatMessage, ChatOptions, SamplingOptions, Usage
from mr.errors import OverloadedError
from mr.runner import Lease
from mr.server import sse
from mr.server.context import Req, ServerContext
from mr.server.disconnect import until_disconnect
from mr.server.modeldefaults import model_defaults
from mr.server.openai.streams import asubmit_all, finish_all
from mr.server.thinking import Thinking


def new_id(prefix: str) -> str:
    """`msg_…`, `resp_…`: the underscore spelling Anthropic's and the Responses API's ids use."""
    return f"{prefix}_{os.urandom(12).hex()}"


@dataclass(frozen=True)
class ChatCall:
    """A request's engine arguments, validated before any model is touched."""

    model: str
    messages: list[dict[str, Any]]
    options: ChatOptions | None = None
    sampling: SamplingOptions = field(default_factory=SamplingOptions)
    max_tokens: int = -1
    stop: list[str] = field(default_factory=list)
    ignore_eos: bool = False
    thinking: Thinking = field(default_factory=Thinking)  # with the model's configured default
    request: Any = None  # the body: the sampling fields it set win over the model's own defaults


@dataclass
class Running:
    """A started chat stream and the lease that holds its model."""

    ctx: ServerContext
    lease: Lease
    stream: AsyncChatStream

    def finish(self) -> None:
        finish_all(self.lease, [self.stream])

    def count(self) -> Usage:
        """Count the usage in the metrics (once, when the answer is complete)."""
        usage = self.stream.usage
        self.ctx.metrics.tokens(self.lease.model.name, usage.prompt_tokens, usage.completion_tokens,
                                usage.cached_tokens)
        return usage

    @property
    def cut_short(self) -> bool:
        """Ended by the server (shutdown, unload) rather than by the model or a limit."""
        return self.stream.finish_reason == "cancelled"


async def start(ctx: ServerContext, call: ChatCall) -> Running:
    lease = await ctx.runner.acquire(call.model)
    llm = lease.llm
    own = model_defaults(lease)
    gen = own.apply(call.request, call.sampling, call.max_tokens, call.stop)
    options = call.thinking.apply(call.options, lease.model.think)
    try:  # rendering, grammars and tokenizing may take long: never on the event loop
        prompt = await asyncio.to_thread(llm.prepare_chat, own.apply_messages(call.messages), options)
    except BaseException:
        lease.release()
        raise
    start = [lambda: llm.achat(prompt, gen.sampling, max_tokens=gen.max_tokens, stop=gen.stop,
                               ignore_eos=call.ignore_eos)]
    [stream] = await asubmit_all(lease, start, off_loop=bool(prompt.fmt.grammar))
    return Running(ctx, lease, stream)


async def collect(request: Req, running: Running) -> ChatMessage:
    """The whole answer; a client that leaves first cancels it (ClientGone)."""
    try:
        message = await until_disconnect(request, running.stream.collect(), running.stream.close)
        if running.cut_short:
            raise OverloadedError("the server stopped this request before it finished; try again")
        running.count()
        return message
    finally:
        running.finish()


def event_stream(running: Running, body: Callable[[Running], AsyncIterator[bytes]]) -> Stream:
    """An SSE response whose frames `body` writes; the lease is released however it ends
    (also when the client is gone before the first byte)."""

    async def frames() -> AsyncIterator[bytes]:
        try:
            async for frame in body(running):
                yield frame
        finally:
            running.finish()

    return Stream(sse.guarded(frames(), running.finish), media_type=sse.MEDIA_TYPE, headers=sse.HEADERS)


async def count_prompt(ctx: ServerContext, call: ChatCall) -> int:
    """How many tokens the rendered prompt of `call` takes (what usage would report)."""
    async with await ctx.runner.acquire(call.model) as lease:
        llm = lease.llm
        messages = model_defaults(lease).apply_messages(call.messages)  # as `start` renders them
        options = call.thinking.apply(call.options, lease.model.think)

        def count() -> int:  # the very tokens a request with these messages would submit
            return len(llm.prepare_chat(messages, options).tokens)

        return await asyncio.to_thread(count)
