"""Run a blocking store transfer (pull, push) in a thread and stream its progress events.

Transfers run on their own daemon threads, at most MAX_TRANSFERS at once (the others wait, and
a cancel ends their wait), never on the default executor that request work shares. Each has a
TransferGuard: it is cancelled when its consumer stops listening (the client went away) and by
`cancel_all` at shutdown, and it bounds the transfer's time and rate. Shutdown never waits on a
transfer: the threads are daemons and their sockets are aborted.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncGenerator, Callable

from mr.errors import MrError
from mr.jsontypes import JSON
from mr.server.errors import scrub
from mr.store.transfer import TransferGuard

MAX_TRANSFERS = 2


class _Done:
    """The end of a transfer's events (after its exception, if it failed)."""


_DONE = _Done()
Event = JSON
Work = Callable[[Callable[[Event], None], TransferGuard], object]

_slots = threading.BoundedSemaphore(MAX_TRANSFERS)
_active: set[TransferGuard] = set()
_active_lock = threading.Lock()


def cancel_all(why: str = "the server is shutting down") -> None:
    with _active_lock:
        guards = list(_active)
    for guard in guards:
        guard.cancel(why)


def active() -> int:
    with _active_lock:
        return len(_active)


def _run(work: Work, sink: Callable[[Event], None], guard: TransferGuard) -> None:
    while not _slots.acquire(timeout=0.25):
        guard.check()
    try:
        guard.check()
        work(sink, guard)
    finally:
        _slots.release()


async def thread_events(work: Work) -> AsyncGenerator[Event | BaseException, None]:
    """Yields the events `work(sink, guard)` emits from its thread, then its exception if it
    failed. Closing the iterator early cancels the transfer."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Event | BaseException | _Done] = asyncio.Queue()
    guard = TransferGuard()

    def put(item: Event | BaseException | _Done) -> None:
        if not loop.is_closed():
            loop.call_soon_threadsafe(queue.put_nowait, item)

    def run() -> None:
        try:
            _run(work, put, guard)
        except BaseException as exc:
            put(exc)
        finally:
            put(_DONE)

    with _active_lock:
        _active.add(guard)
    threading.Thread(target=run, name="mr-transfer", daemon=True).start()
    try:
        while True:
            item = await queue.get()
            if isinstance(item, _Done):
                return
            yield item
    finally:
        guard.cancel("the client went away")  # a no-op for a transfer that finished
        guard.close()
        with _active_lock:
            _active.discard(guard)


async def first_event(events: AsyncGenerator[Event | BaseException, None]) -> Event | None:
    """The first event, so that a transfer failing at once (no such model, bad credentials)
    is answered with its own status instead of a 200 with the error inside."""
    try:
        item = await anext(events)
    except StopAsyncIteration:
        return None
    if isinstance(item, BaseException):
        await events.aclose()
        raise item
    return item


def error_message(exc: BaseException) -> str:
    return scrub(str(exc)) if isinstance(exc, MrError) else "internal error"
