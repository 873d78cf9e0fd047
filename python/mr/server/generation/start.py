"""`start`: from a Prepared request to running engine streams, for every API.

Take the model's lease (lazy load, queue cap), fill in the model's own defaults where the request
says nothing, refuse media the model cannot take, render the chat (decoding its images and audio)
or tokenize the text in a worker thread, submit one stream per answer, and release everything if
any of it fails. Rendering, grammars and tokenizing may take
long enough to stall every other client of the event loop; a grammar is compiled at submit, so
that moves off the loop too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar, overload

import numpy as np

from mr.engine import AsyncChatStream, AsyncStream, Usage
from mr.media.types import MediaLimits
from mr.runner import Lease
from mr.server import sse
from mr.server.context import ServerContext
from mr.server.errors import invalid
from mr.server.generation import media
from mr.server.generation.prepared import Chat, Prepared, Text
from mr.server.generation.submit import asubmit_all, finish_all
from mr.server.modeldefaults import model_defaults
from mr.server.wire import Capture, Wire, engine_wire


class EngineStream(Protocol):
    """What every started stream offers (AsyncChatStream and AsyncStream alike)."""

    def close(self) -> None: ...

    def abort(self, why: str) -> None: ...

    @property
    def usage(self) -> Usage: ...

    @property
    def finish_reason(self) -> str | None: ...


S = TypeVar("S", bound=EngineStream)


@dataclass(frozen=True)
class Direct:
    """A streamed answer in OpenAI's chunks whose frames the engine may render itself and write
    past ASGI (mr.server.wire): only for plain text without logprobs, else it streams as usual."""

    frames: sse.ChunkFrames
    wire: Wire
    key: bytes  # sse.CONTENT_KEY (chat) or sse.TEXT_KEY (completions)
    capture: Capture | None

    def frame(self, index: int) -> tuple[bytes, bytes, bool]:
        return self.frames.text_frame(index, self.key, self.wire.chunked)


@dataclass
class Running(Generic[S]):
    """Started engine streams (one per answer) and the lease that holds their model."""

    ctx: ServerContext
    lease: Lease
    streams: list[S]
    direct: Direct | None = None  # set when the engine renders the frames

    @property
    def stream(self) -> S:
        """The answer of a one-answer request."""
        return self.streams[0]

    def close(self) -> None:
        """Cancel the streams (a client gone); `finish` still follows."""
        for s in self.streams:
            s.close()

    def finish(self) -> None:
        """Close the streams and release the lease; idempotent, so every way out may call it."""
        finish_all(self.lease, self.streams)

    def count(self) -> Usage:
        """Count a one-answer request's usage in the metrics (once, when the answer is complete)."""
        usage = self.stream.usage
        self.ctx.metrics.tokens(self.lease.model.name, usage.prompt_tokens, usage.completion_tokens,
                                usage.cached_tokens)
        return usage

    @property
    def cut_short(self) -> bool:
        """Ended by the server (shutdown, unload) rather than by the model or a limit."""
        return any(s.finish_reason == "cancelled" for s in self.streams)


def check_fits(n_streams: int, n_slots: int, max_queue: int, param: str = "n") -> None:
    """A request that could never be admitted whole (more streams than slots plus queue) is a
    400: a 503 would send the client into retrying forever."""
    if n_streams > n_slots + max_queue:
        raise invalid(param, f"this request needs {n_streams} parallel generations; the model runs "
                             f"{n_slots} at a time with {max_queue} waiting at most")


@overload
async def start(ctx: ServerContext, prep: Prepared[Chat], *, direct: Direct | None = None,
                loaded: Callable[[], None] | None = None) -> Running[AsyncChatStream]: ...


@overload
async def start(ctx: ServerContext, prep: Prepared[Text], *, direct: Direct | None = None,
                loaded: Callable[[], None] | None = None) -> Running[AsyncStream]: ...


async def start(ctx: ServerContext, prep: Prepared[Any], *, direct: Direct | None = None,
                loaded: Callable[[], None] | None = None) -> Running[Any]:
    """Streams for every answer of `prep`, submitted. `direct`: a streamed OpenAI response's
    frames (the engine renders them when the answer allows); `loaded`: called once the model is
    loaded (Ollama reports the load's time)."""
    lease = await ctx.runner.acquire(prep.model, prep.keep_alive)
    try:  # every failure before the streams exist releases the lease here
        if loaded is not None:
            loaded()
        check_fits(prep.n_streams, lease.model.n_slots, ctx.runner.config.max_queue)
        if isinstance(prep.input, Chat):
            starts, off_loop, direct = await _chat(lease, prep, direct, ctx.settings.media_limits())
        else:
            starts, off_loop, direct = await _text(lease, prep, direct)
    except BaseException:
        lease.release()
        raise
    streams = await asubmit_all(lease, starts, off_loop)  # releases the lease itself on failure
    return Running(ctx, lease, streams, direct)


Starts = list[Callable[[], AsyncChatStream]] | list[Callable[[], AsyncStream]]
Submit = tuple[Starts, bool, Direct | None]  # the stream starters, off the loop?, direct


async def _chat(lease: Lease, prep: Prepared[Chat], direct: Direct | None, limits: MediaLimits) -> Submit:
    llm, own = lease.llm, model_defaults(lease)
    chat = prep.input
    options = chat.thinking.apply(chat.options, lease.model.think)
    media.check_accepted(chat.messages, llm.accepts, prep.model)  # before anything is decoded
    # images and audio are decoded there too, within the server's limits
    prompt = await asyncio.to_thread(llm.prepare_chat, own.apply_messages(chat.messages), options, limits)
    if not prompt.fmt.plain or prep.logprobs is not None:
        direct = None  # tool calls, reasoning and logprobs are parsed per token, in Python
    engine = _engine(direct, prep.n_streams)

    def one(i: int) -> Callable[[], AsyncChatStream]:
        gen = own.apply(prep.fields, prep.sampling(llm.model.n_vocab, i), prep.max_tokens, prep.stop)
        frame = direct.frame(i) if direct is not None else None
        return lambda: llm.achat(prompt, gen.sampling, max_tokens=gen.max_tokens, stop=gen.stop,
                                 ignore_eos=prep.ignore_eos, logprobs=prep.logprobs, frame=frame,
                                 wire=engine, prediction=prep.prediction)

    return [one(i) for i in range(prep.n)], bool(prompt.fmt.grammar), direct


async def _text(lease: Lease, prep: Prepared[Text], direct: Direct | None) -> Submit:
    llm, own = lease.llm, model_defaults(lease)
    prompts = await asyncio.to_thread(prep.input.encode, llm)
    if prep.logprobs is not None:
        direct = None
    engine = _engine(direct, prep.n_streams)

    def one(tokens: np.ndarray, i: int, index: int) -> Callable[[], AsyncStream]:
        gen = own.apply(prep.fields, prep.sampling(llm.model.n_vocab, i), prep.max_tokens, prep.stop)
        frame = direct.frame(index) if direct is not None else None
        return lambda: llm.agenerate(tokens, gen.sampling, max_tokens=gen.max_tokens, stop=gen.stop,
                                     ignore_eos=prep.ignore_eos, logprobs=prep.logprobs, frame=frame,
                                     wire=engine)

    n = prep.n
    return [one(tokens, i, p * n + i) for p, tokens in enumerate(prompts) for i in range(n)], False, direct


def _engine(direct: Direct | None, n_streams: int) -> tuple[int, int] | None:
    """Where the engine thread may send the frames itself (mr.server.wire.engine_wire)."""
    return engine_wire(direct.wire, n_streams, direct.capture) if direct is not None else None
