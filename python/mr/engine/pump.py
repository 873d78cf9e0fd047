"""The bridge between the engine thread and Python consumers.

The native engine publishes events in batches, their text already assembled in the engine step
(whole UTF-8 characters, stop strings cut) and, for a request that asked for it, already rendered
as the bytes of a wire frame. They are drained in one call per engine step and handed to the
sink of their request, so GIL crossings and wake-ups are per step, not per token. Two ways to
drain:

- a daemon thread that waits in `poll` with the GIL released (CLI, scripts, tests);
- once `attach(loop)` is called, the asyncio loop itself, woken by the engine's file descriptor
  (`loop.add_reader`), with no extra thread and no cross-thread hand-off (the server).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from mr import _native

if TYPE_CHECKING:
    from mr._native import Event

LOG = logging.getLogger("mr.engine")


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


Sink = Callable[["Event"], None]


class EventPump:
    def __init__(self, engine: _native.Engine) -> None:
        self._engine = engine
        self._sinks: dict[int, Sink] = {}
        self._lock = threading.Lock()  # submit + register is atomic w.r.t. routing
        self._closed = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = threading.Thread(
            target=self._run, name="mr-event-pump", daemon=True
        )
        self._thread.start()

    def submit(self, sink: Sink, request: _native.Request) -> int:
        with self._lock:
            request_id = self._engine.submit(request)
            self._sinks[request_id] = sink
        return request_id

    def submit_sync(self, request: _native.Request) -> tuple[int, queue.SimpleQueue[Event | None]]:
        """Submit for a blocking consumer: its events go to a queue (None: no event, a wake-up)."""
        self._detach_if_idle()
        route: queue.SimpleQueue[Event | None] = queue.SimpleQueue()
        return self.submit(route.put, request), route

    def cancel(self, request_id: int) -> None:
        self._engine.cancel(request_id)

    def decide_wire(self, request_id: int, open: bool) -> None:
        self._engine.decide_wire(request_id, open)

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Drain from `loop` (fd readiness) instead of the thread. Call from the loop's thread."""
        if self._loop is loop:
            return
        self._detach_if_idle()  # a loop that has ended (asyncio.run returned) hands over
        if self._loop is not None:
            raise RuntimeError("this engine is already attached to another running event loop")
        self._stop_thread()
        self._loop = loop
        loop.add_reader(self._engine.event_fd, self._drain_now)
        self._drain_now()  # anything published while switching

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        return self._loop

    def _detach_if_idle(self) -> None:
        """Back to the thread when the attached loop no longer runs: nobody would drain."""
        loop = self._loop
        if loop is None or loop.is_running():
            return
        if not loop.is_closed():
            loop.remove_reader(self._engine.event_fd)
        self._loop = None
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="mr-event-pump", daemon=True)
                self._thread.start()

    def close(self) -> None:
        """Stop draining, after a last drain (the engine's final cancel events reach their streams).
        Safe from any thread (a dropped LLM's finalizer runs wherever the garbage collector
        does): the loop's reader and its queues are only touched on the loop's own thread."""
        self._stop_thread()
        loop = self._loop
        if loop is not None and not loop.is_closed() and _running_loop() is not loop:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(self._close_on_loop)
        elif loop is not None and not loop.is_closed():
            self._close_on_loop()
        else:
            self._drain_now()
        self._closed.set()

    def _close_on_loop(self) -> None:
        assert self._loop is not None
        self._loop.remove_reader(self._engine.event_fd)
        self._drain_now()

    def _stop_thread(self) -> None:
        self._closed.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self._closed.clear()

    def _run(self) -> None:
        while not self._closed.is_set():
            try:
                self._route(self._engine.poll(100))
            except Exception:  # the pump must outlive any bad event, or every request would hang
                LOG.exception("event routing failed")

    def _drain_now(self) -> None:
        self._route(self._engine.poll(0))

    def _route(self, events: list[Event]) -> None:
        if not events:
            return
        sinks = self._sinks
        with self._lock:
            for ev in events:
                sink = sinks.pop(ev.id, None) if ev.finished else sinks.get(ev.id)
                if sink is None:
                    continue
                try:
                    sink(ev)
                except Exception:  # one consumer's failure must not starve the others
                    LOG.exception("delivering an event of request %d failed", ev.id)
