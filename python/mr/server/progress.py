"""Run a blocking store operation (pull, push) in a thread and stream its progress events."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

from mr.errors import MrError
from mr.server.errors import scrub

_DONE = object()
Event = dict[str, Any]


Work = Callable[[Callable[[Event], None]], Any]


async def thread_events(work: Work) -> AsyncIterator[Event | BaseException]:
    """Yields the events `work(sink)` emits from its thread, then its exception if it failed."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Any] = asyncio.Queue()

    def sink(event: Event) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, event)

    def run() -> None:
        try:
            work(sink)
        except BaseException as exc:
            loop.call_soon_threadsafe(queue.put_nowait, exc)
        finally:
            loop.call_soon_threadsafe(queue.put_nowait, _DONE)

    future = loop.run_in_executor(None, run)
    while True:
        item = await queue.get()
        if item is _DONE:
            break
        yield item
    await future


def error_message(exc: BaseException) -> str:
    return scrub(str(exc)) if isinstance(exc, MrError) else "internal error"
