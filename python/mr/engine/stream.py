"""One request's output as an iterator of UTF-8-safe text pieces."""

from __future__ import annotations

import contextlib
import queue
from collections.abc import Callable, Iterator

from mr.engine.pump import FINISH_NAMES, Event
from mr.engine.text import StopMatcher, Utf8Stream
from mr.errors import EngineError


class Stream(Iterator[str]):
    """Text pieces as they are generated. After the last one, `finish_reason` is "stop" or
    "length" (or "cancelled"), and the token counts are set. Closing it early (or dropping it)
    cancels the request, which frees its slot within one engine step."""

    def __init__(self, request_id: int, route: queue.SimpleQueue[Event], stops: list[str],
                 cancel: Callable[[int], None]) -> None:
        self.id = request_id
        self._route = route
        self._cancel = cancel
        self._utf8 = Utf8Stream()
        self._stops = StopMatcher(stops)
        self._done = False
        self.finish_reason: str | None = None
        self.n_prompt = 0
        self.n_generated = 0
        self.tokens: list[int] = []

    def __iter__(self) -> Stream:
        return self

    def __next__(self) -> str:
        while not self._done:
            text = self._step(self._route.get())
            if text:
                return text
        raise StopIteration

    def text(self) -> str:
        """Everything not yet consumed, joined."""
        return "".join(self)

    def close(self) -> None:
        if not self._done:
            self._done = True
            self._cancel(self.id)
            if self.finish_reason is None:
                self.finish_reason = "cancelled"

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # interpreter shutdown: the engine is going away too
            self.close()

    def _step(self, event: Event) -> str:
        self.n_prompt = event.n_prompt
        self.n_generated = max(self.n_generated, event.n_generated)
        text = ""
        if event.token >= 0:
            self.tokens.append(event.token)
            text = self._stops.feed(self._utf8.feed(event.piece))
            if self._stops.stopped:
                self.close()
                self.finish_reason = "stop"
                return text
        if event.finish:
            self._done = True
            if event.finish == 4:
                raise EngineError(event.error or "generation failed")
            self.finish_reason = FINISH_NAMES.get(event.finish, "stop")
            text += self._stops.feed(self._utf8.flush())
            text += self._stops.flush()
        return text
