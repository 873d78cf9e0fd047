"""Watch a request's connection: a client that goes away cancels its work.

Streaming responses are cancelled by Litestar itself when the client disconnects (the generator
gets CancelledError and closes its engine streams). A non-streamed request has no such watcher:
`until_disconnect` runs its work while listening for `http.disconnect`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import TypeVar

from mr.server.context import Req

T = TypeVar("T")


class ClientGone(Exception):
    """The client disconnected before the answer was ready."""


async def _wait_disconnect(request: Req) -> None:
    while True:
        message = await request.receive()
        if message.get("type") == "http.disconnect":
            return


async def until_disconnect(request: Req, work: Awaitable[T],
                           on_disconnect: Callable[[], None]) -> T:
    """Await `work`; if the client disconnects first, call `on_disconnect` and raise ClientGone."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_wait_disconnect(request))
    try:
        done, _ = await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            return task.result()
        on_disconnect()
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
        raise ClientGone
    finally:
        watcher.cancel()
        if not task.done():
            task.cancel()
