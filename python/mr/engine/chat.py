"""Chat streams: text pieces from the engine turned into assistant-message deltas.

The model's output is parsed (content, reasoning content, tool calls) by the chat format that
rendered its prompt; see mr.engine.chatformat.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Generic, NamedTuple, TypeVar

import numpy as np

from mr import _native
from mr.engine.chatformat import ChatFormat
from mr.engine.media import MediaTokens
from mr.engine.stream import AsyncStream, Stream
from mr.engine.types import ChatDelta, ChatMessage, SpecCounts, Timings, Usage


class ChatPrompt(NamedTuple):
    """A rendered, tokenized chat request (LLM.prepare_chat): the costly part, done once, off
    the event loop, and shared by every choice of the request."""

    tokens: np.ndarray  # with media: a placeholder at each media token's place
    stops: list[str]
    fmt: ChatFormat
    media: list[_native.MediaSpan] = []  # noqa: RUF012 (never mutated: a NamedTuple's default)

    @property
    def prompt(self) -> np.ndarray | MediaTokens:
        """What LLM.generate takes for this prompt."""
        return MediaTokens(self.tokens, self.media) if self.media else self.tokens


_S = TypeVar("_S", Stream, AsyncStream)


class _ChatOutput(Generic[_S]):
    """What both chat streams share: parsing state and the underlying text stream's results."""

    def __init__(self, stream: _S, fmt: ChatFormat) -> None:
        self._stream: _S = stream
        self._fmt = fmt
        self._finished = False

    @property
    def message(self) -> ChatMessage:
        """The assistant message so far (whole once the stream is done)."""
        return self._fmt.message()

    def close(self) -> None:
        """Cancel the request (frees its slot within one engine step)."""
        self._stream.close()

    def abort(self, why: str) -> None:
        """End the request from outside; the consumer gets CutShortError (see Stream.abort)."""
        self._stream.abort(why)

    @property
    def finish_reason(self) -> str | None:
        raw = self._stream.finish_reason
        return "tool_calls" if raw == "stop" and self.message.tool_calls else raw

    @property
    def usage(self) -> Usage:
        return self._stream.usage

    @property
    def timings(self) -> Timings:
        return self._stream.timings

    @property
    def spec(self) -> SpecCounts:
        """Speculative decoding's counts (known once the answer is done)."""
        return self._stream.spec

    def _feed(self, piece: str, final: bool) -> ChatDelta | None:
        return self._fmt.feed(piece, final)


class ChatStream(_ChatOutput[Stream], Iterator[ChatDelta]):
    """Blocking iterator of ChatDelta; `message`, `finish_reason` and `usage` when done."""

    def __iter__(self) -> ChatStream:
        return self

    def __next__(self) -> ChatDelta:
        while not self._finished:
            piece = next(self._stream, None)
            if piece is None:
                self._finished = True
                delta = self._feed("", final=True)
            else:
                delta = self._feed(piece, final=False)
            if delta is not None:
                return delta
        raise StopIteration

    def collect(self) -> ChatMessage:
        for _ in self:
            pass
        return self.message


    @property
    def stream(self) -> Stream:
        return self._stream


class AsyncChatStream(_ChatOutput[AsyncStream], AsyncIterator[ChatDelta]):
    """The asyncio twin of ChatStream."""

    def __aiter__(self) -> AsyncChatStream:
        return self

    async def __anext__(self) -> ChatDelta:
        while not self._finished:
            try:
                piece = await self._stream.__anext__()
                delta = self._feed(piece, final=False)
            except StopAsyncIteration:
                self._finished = True
                delta = self._feed("", final=True)
            if delta is not None:
                return delta
        raise StopAsyncIteration

    async def collect(self) -> ChatMessage:
        async for _ in self:
            pass
        return self.message

    async def aclose(self) -> None:
        self._stream.close()


    @property
    def stream(self) -> AsyncStream:
        return self._stream
