"""One request's output as an iterator (or async iterator) of UTF-8-safe text pieces."""

from __future__ import annotations

import asyncio
import contextlib
import queue
from collections.abc import AsyncIterator, Callable, Iterator

from mr.engine.pump import FINISH_NAMES, Event
from mr.engine.text import StopMatcher, Utf8Stream
from mr.engine.types import Timings, TokenLogprob, TopLogprob, Usage
from mr.errors import CutShortError, EngineError

# Finish codes whose error text means the request was ended by the engine, not by its own stop
# condition (KV cache full: "length" + text; engine shut down: "cancelled" + text).
_CUT_SHORT = (2, 3)


class _Output:
    """Turns a request's events into text: UTF-8 assembly, stop strings, counts, finish reason."""

    def __init__(self, request_id: int, stops: list[str], cancel: Callable[[int], None],
                 piece_of: Callable[[int], bytes] | None, deliver: Callable[[Event], None]) -> None:
        self.id = request_id
        self._cancel = cancel
        self._deliver = deliver  # puts an event on this stream's own route
        self.error: str | None = None  # why the answer was cut short, when it was
        self._piece_of = piece_of  # set when logprobs were asked for
        self._utf8 = Utf8Stream()
        self._stops = StopMatcher(stops)
        self.done = False
        self.finish_reason: str | None = None
        self.n_prompt = 0
        self.n_generated = 0
        self.n_cached = 0
        self.tokens: list[int] = []
        self.logprobs: list[TokenLogprob] = []
        self.timings = Timings()

    @property
    def usage(self) -> Usage:
        return Usage(prompt_tokens=self.n_prompt, completion_tokens=self.n_generated,
                     cached_tokens=self.n_cached)

    @property
    def stop_sequence(self) -> str | None:
        """The stop string that ended the output, if one did (Anthropic reports which)."""
        return self._stops.matched

    def close(self) -> None:
        if not self.done:
            self.done = True
            self._cancel(self.id)
            if self.finish_reason is None:
                self.finish_reason = "cancelled"

    def abort(self, why: str) -> None:
        """End the request from outside (unload, shutdown): the consumer gets CutShortError, not
        a finish that looks complete. A synthetic finish event wakes a consumer that is waiting."""
        if self.done:
            return
        self._cancel(self.id)
        self._deliver(Event(self.id, -1, b"", 3, self.n_prompt, self.n_generated, why, self.n_cached,
                            0.0, None, (0.0, 0.0, 0.0)))

    def _logprob(self, event: Event) -> TokenLogprob:
        assert self._piece_of is not None
        top = [TopLogprob(token=t, text=self._piece_of(t), logprob=lp) for t, lp in event.top or ()]
        return TokenLogprob(token=event.token, text=event.piece, logprob=event.logprob, top=top)

    def step(self, event: Event) -> str:
        self.n_prompt = event.n_prompt
        self.n_generated = max(self.n_generated, event.n_generated)
        self.n_cached = event.n_cached
        text = ""
        if event.token >= 0:
            self.tokens.append(event.token)
            if self._piece_of is not None:
                self.logprobs.append(self._logprob(event))
            text = self._stops.feed(self._utf8.feed(event.piece))
            if self._stops.stopped:
                self.close()
                self.finish_reason = "stop"
                return text
        if event.finish:
            self.done = True
            self.timings = Timings(queue_ms=event.timings[0], prefill_ms=event.timings[1],
                                   decode_ms=event.timings[2])
            if event.finish == 4:
                raise EngineError(event.error or "generation failed")
            if event.error and event.finish in _CUT_SHORT:
                self.finish_reason, self.error = "error", event.error
                raise CutShortError(f"the answer was cut short: {event.error}")
            self.finish_reason = FINISH_NAMES.get(event.finish, "stop")
            text += self._stops.feed(self._utf8.flush())
            text += self._stops.flush()
        return text


class Stream(_Output, Iterator[str]):
    """Text pieces as they are generated (blocking). After the last one, `finish_reason` is
    "stop", "length" or "cancelled" and the token counts are set. Closing it early (or dropping
    it) cancels the request, which frees its slot within one engine step. An answer the engine
    cut short (KV cache full, engine shut down, `abort`) raises CutShortError instead of ending."""

    def __init__(self, request_id: int, route: queue.SimpleQueue[Event], stops: list[str],
                 cancel: Callable[[int], None], piece_of: Callable[[int], bytes] | None = None) -> None:
        super().__init__(request_id, stops, cancel, piece_of, route.put)
        self._route = route

    def __iter__(self) -> Stream:
        return self

    def __next__(self) -> str:
        while not self.done:
            text = self.step(self._route.get())
            if text:
                return text
        raise StopIteration

    def text(self) -> str:
        """Everything not yet consumed, joined."""
        return "".join(self)

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # interpreter shutdown: the engine is going away too
            self.close()


class AsyncStream(_Output, AsyncIterator[str]):
    """The asyncio twin of Stream, fed on the event loop's thread (see EventPump.attach).
    Cancelling the task that iterates it (e.g. a client disconnect) cancels the request."""

    def __init__(self, request_id: int, route: asyncio.Queue[Event], stops: list[str],
                 cancel: Callable[[int], None], piece_of: Callable[[int], bytes] | None = None) -> None:
        super().__init__(request_id, stops, cancel, piece_of, route.put_nowait)
        self._route = route

    def __aiter__(self) -> AsyncStream:
        return self

    async def __anext__(self) -> str:
        try:
            while not self.done:
                event = self._route.get_nowait() if not self._route.empty() else await self._route.get()
                text = self.step(event)
                if text:
                    return text
        except asyncio.CancelledError:
            self.close()
            raise
        raise StopAsyncIteration

    async def text(self) -> str:
        return "".join([piece async for piece in self])

    async def aclose(self) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()
