"""One request's output as an iterator (or async iterator) of text pieces.

The text comes assembled from the engine step (whole UTF-8 characters, stop strings cut): what
is left here is bookkeeping per event. A stream can also go *direct* (`AsyncStream.go_direct`):
the engine renders each piece as wire bytes and the event pump writes them straight out, so a
streamed token costs the event loop one write and no task wake-up.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import queue
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING

from mr import _native
from mr._native import Finish
from mr.engine.types import SpecCounts, Timings, TokenLogprob, TopLogprob, Usage, WireReport
from mr.errors import CutShortError, EngineError

if TYPE_CHECKING:
    from mr._native import Event

# Finishes whose error text means the request was ended by the engine, not by its own stop
# condition (KV cache full: "length" + text; engine shut down: "cancelled" + text).
_CUT_SHORT = (Finish.LENGTH, Finish.CANCELLED)
_REST_OF_FRAME = _native.Engine.REST_OF_FRAME


class _Output:
    """A request's events as text: counts, log-probabilities, finish reason."""

    def __init__(self, request_id: int, stops: list[str], cancel: Callable[[int], None],
                 piece_of: Callable[[int], bytes] | None, n_prompt: int = 0) -> None:
        self.id = request_id
        self._cancel = cancel
        self._stops = stops
        self.error: str | None = None  # why the answer was cut short, when it was
        self._piece_of = piece_of  # set when logprobs were asked for
        self.done = False
        self.finish_reason: str | None = None
        self.stop_sequence: str | None = None  # the stop string that ended the output, if one did
        self.n_prompt = n_prompt
        self._n_generated = 0  # the engine's count, known at the finish
        self.n_cached = 0
        self.tokens: list[int] = []
        self.logprobs: list[TokenLogprob] = []
        self.timings = Timings()
        self.spec = SpecCounts()  # speculative decoding's counts, known at the finish
        self.wire_end: WireReport | None = None  # what the engine sent itself
        self._engine_sends = False  # the engine thread writes this stream's frames to the socket
        self._aborted: str | None = None  # why abort() ended it, until the engine's finish comes

    @property
    def usage(self) -> Usage:
        return Usage(prompt_tokens=self.n_prompt, completion_tokens=self.n_generated,
                     cached_tokens=self.n_cached, accepted_prediction_tokens=self.spec.prediction_accepted,
                     rejected_prediction_tokens=self.spec.prediction_rejected)

    @property
    def n_generated(self) -> int:
        """Tokens generated so far (the events carry no counts; the finish carries the engine's)."""
        return max(self._n_generated, len(self.tokens))

    def close(self) -> None:
        if not self.done:
            self.done = True
            self._cancel(self.id)
            if self.finish_reason is None:
                self.finish_reason = "cancelled"

    def abort(self, why: str) -> None:
        """End the request from outside (unload, shutdown): the consumer gets CutShortError, not
        a finish that looks complete, and a consumer that is waiting wakes up at once."""
        if self.done:
            return
        self._cancel(self.id)
        self._aborted = why
        if not self._engine_sends:
            # The engine thread may still send a frame until it takes the cancel: then only its
            # own finish, which follows its last frame, may end the stream (an error frame
            # written now could land before that frame on the socket).
            self._wake()

    def _wake(self) -> None:
        """Wake a consumer waiting for an event (a method, not a stored bound method: that would
        be a reference cycle, and a stream and its engine would wait for the collector)."""
        raise NotImplementedError

    def _end_aborted(self) -> None:
        assert self._aborted is not None
        self.done = True
        self.finish_reason, self.error = "error", self._aborted
        raise CutShortError(f"the answer was cut short: {self._aborted}")

    def _logprob(self, token: int, ev: Event) -> TokenLogprob:
        assert self._piece_of is not None and ev.logprob is not None
        alternatives = [TopLogprob(token=t, text=self._piece_of(t), logprob=v) for t, v in ev.top]
        return TokenLogprob(token=token, text=ev.piece, logprob=ev.logprob, top=alternatives)

    def step(self, ev: Event) -> str:
        token = ev.token
        if token >= 0:
            self.tokens.append(token)
            if self._piece_of is not None and ev.logprob is not None:
                self.logprobs.append(self._logprob(token, ev))
        if ev.finished:
            self._end(ev)
        return ev.text

    def _end(self, ev: Event) -> None:
        self.done = True
        spec = ev.spec
        self.spec = SpecCounts(spec.drafted, spec.accepted, spec.prediction_accepted,
                               spec.prediction_rejected)
        if ev.has_wire:
            self.wire_end = WireReport(times=ev.wire_times, payload=ev.wire_log, n_bytes=ev.wire_bytes)
        self.n_prompt = ev.n_prompt or self.n_prompt
        self._n_generated = ev.n_generated
        self.n_cached = ev.n_cached
        self.timings = Timings(queue_ms=ev.queue_ms, prefill_ms=ev.prefill_ms, decode_ms=ev.decode_ms)
        finish, error = ev.finish, ev.error
        if finish == Finish.CANCELLED and self._aborted is not None:
            error = error or self._aborted
        if finish == Finish.ERROR:
            raise EngineError(error or "generation failed")
        if error and finish in _CUT_SHORT:
            self.finish_reason, self.error = "error", error
            raise CutShortError(f"the answer was cut short: {error}")
        self.finish_reason = finish.name.lower()
        if ev.stop_index >= 0:
            self.stop_sequence = self._stops[ev.stop_index]
            self.finish_reason = "stop"


class Stream(_Output, Iterator[str]):
    """Text pieces as they are generated (blocking). After the last one, `finish_reason` is
    "stop", "length" or "cancelled" and the token counts are set. Closing it early (or dropping
    it) cancels the request, which frees its slot within one engine step. An answer the engine
    cut short (KV cache full, engine shut down, `abort`) raises CutShortError instead of ending."""

    def __init__(self, request_id: int, route: queue.SimpleQueue[Event | None], stops: list[str],
                 cancel: Callable[[int], None], piece_of: Callable[[int], bytes] | None = None,
                 n_prompt: int = 0) -> None:
        super().__init__(request_id, stops, cancel, piece_of, n_prompt)
        self._route = route

    def _wake(self) -> None:
        self._route.put(None)  # no event: abort() has ended the request

    def __iter__(self) -> Stream:
        return self

    def __next__(self) -> str:
        while not self.done:
            ev = self._route.get()
            if ev is None:
                self._end_aborted()
                continue
            text = self.step(ev)
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
    """The asyncio twin of Stream, fed on the event loop's thread (see EventPump.attach): `put`
    is the request's sink. Cancelling the task that iterates it (e.g. a client disconnect)
    cancels the request. Events that are waiting when the consumer wakes come out as one piece."""

    def __init__(self, request_id: int, stops: list[str], cancel: Callable[[int], None],
                 piece_of: Callable[[int], bytes] | None = None, n_prompt: int = 0,
                 decide_wire: Callable[[int, bool], None] | None = None) -> None:
        super().__init__(request_id, stops, cancel, piece_of, n_prompt)
        self._pending: collections.deque[Event] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None
        self._write: Callable[[bytes, bool], None] | None = None
        self._decide_wire = decide_wire  # submitted with a wire: the engine may send the frames

    def put(self, ev: Event) -> None:
        write = self._write
        if write is not None:
            frame, finished = ev.frame, ev.finished
            if finished:
                self._write = None  # the writer holds its streams: no cycle outlives the request
            if frame is not None:
                write(frame, ev.token != _REST_OF_FRAME)
                if not finished:
                    return  # nothing left for the consumer: no wake-up at all
        self._pending.append(ev)
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    @property
    def wired(self) -> bool:
        """Submitted with a wire that is not decided yet."""
        return self._decide_wire is not None

    def go_direct(self, write: Callable[[bytes, bool], None], engine_writes: bool = False) -> None:
        """From now on each event's frame goes to `write(frame, whole)` as it is drained; only
        the finish reaches the consumer. Frames already waiting are written first, in order. Only
        for a request submitted with a frame format, and whose consumer needs no per-token text.
        With a wire, `engine_writes` lets the engine send the frames itself (those it cannot send
        come to `write`; `whole` is False for the rest of one it began); else it gives them back."""
        waiting, self._pending = self._pending, collections.deque()
        self._write = write
        for ev in waiting:
            self.put(ev)
        if self._decide_wire is not None:
            decide, self._decide_wire = self._decide_wire, None
            self._engine_sends = engine_writes
            decide(self.id, engine_writes)

    def __aiter__(self) -> AsyncStream:
        return self

    async def __anext__(self) -> str:
        try:
            while not self.done:
                if not self._pending:
                    if self._aborted is not None and not self._engine_sends:
                        self._end_aborted()
                    self._waiter = asyncio.get_running_loop().create_future()
                    try:
                        await self._waiter
                    finally:
                        self._waiter = None
                    continue
                text = self._take_pending()
                if text:
                    return text
        except asyncio.CancelledError:
            self.close()
            raise
        raise StopAsyncIteration

    def _take_pending(self) -> str:
        """The text of the events waiting (one piece), up to a finish, which comes on its own
        next time: an error must not eat this text. A direct stream's frames were written, so
        its consumer only waits for the finish."""
        pieces: list[str] = []
        while self._pending and not self.done:
            if self._pending[0].finished and pieces:
                break
            pieces.append(self.step(self._pending.popleft()))
        return "".join(pieces)

    async def text(self) -> str:
        return "".join([piece async for piece in self])

    async def wait(self) -> None:
        """Until the request ends (a direct stream: its frames are all written by then)."""
        async for _ in self:
            pass

    async def aclose(self) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()
