"""The bridge between the engine thread and Python consumers.

The native engine publishes events (request id, token, bytes, finish, counts) in batches. One
daemon thread drains them with the GIL released while it waits, and routes each to the queue of
its request, so GIL crossings are per engine step, not per token.
"""

from __future__ import annotations

import queue
import threading
from typing import NamedTuple

from mr import _native


class Event(NamedTuple):
    id: int
    token: int
    piece: bytes
    finish: int  # 0 none, 1 stop, 2 length, 3 cancelled, 4 error
    n_prompt: int
    n_generated: int
    error: str


FINISH_NAMES = {1: "stop", 2: "length", 3: "cancelled", 4: "error"}


class EventPump:
    def __init__(self, engine: _native.Engine) -> None:
        self._engine = engine
        self._routes: dict[int, queue.SimpleQueue[Event]] = {}
        self._lock = threading.Lock()  # submit + register is atomic w.r.t. routing
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mr-event-pump", daemon=True)
        self._thread.start()

    def submit(self, prompt: object, sampling: _native.SamplingParams, max_tokens: int,
               ignore_eos: bool, stop_tokens: list[int]) -> tuple[int, queue.SimpleQueue[Event]]:
        with self._lock:
            request_id = self._engine.submit(prompt, sampling, max_tokens, ignore_eos, stop_tokens)
            route: queue.SimpleQueue[Event] = queue.SimpleQueue()
            self._routes[request_id] = route
        return request_id, route

    def cancel(self, request_id: int) -> None:
        self._engine.cancel(request_id)

    def close(self) -> None:
        self._closed.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._closed.is_set():
            events = self._engine.poll(100)
            if not events:
                continue
            with self._lock:
                for raw in events:
                    event = Event(*raw)
                    route = self._routes.get(event.id)
                    if route is None:
                        continue
                    if event.finish:
                        del self._routes[event.id]
                    route.put(event)
