"""Interleave the deltas of n streams (n choices) as they come, or just their ends."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Protocol, TypeVar

T = TypeVar("T")


class _End:
    """A stream is exhausted."""


_END = _End()


async def merge(streams: Sequence[AsyncIterator[T]]) -> AsyncIterator[tuple[int, T | None]]:
    """(index, item) pairs; (index, None) once a stream is exhausted. Errors propagate."""
    if len(streams) == 1:
        async for item in streams[0]:
            yield 0, item
        yield 0, None
        return
    queue: asyncio.Queue[tuple[int, T | Exception | _End]] = asyncio.Queue()

    async def pump(index: int, stream: AsyncIterator[T]) -> None:
        try:
            async for item in stream:
                queue.put_nowait((index, item))
        except Exception as exc:
            queue.put_nowait((index, exc))
            return
        queue.put_nowait((index, _END))

    tasks = [asyncio.create_task(pump(i, s)) for i, s in enumerate(streams)]
    try:
        remaining = len(streams)
        while remaining:
            index, got = await queue.get()
            if isinstance(got, Exception):
                raise got
            if isinstance(got, _End):
                remaining -= 1
                yield index, None
            else:
                yield index, got
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task


class Waitable(Protocol):
    async def wait(self) -> None: ...


async def finished(streams: Sequence[Waitable]) -> AsyncIterator[int]:
    """The index of each stream as it ends (streams written direct: only their ends are news).
    Errors propagate."""
    if len(streams) == 1:
        await streams[0].wait()
        yield 0
        return
    pending = {asyncio.ensure_future(s.wait()): i for i, s in enumerate(streams)}
    try:
        while pending:
            done, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                index = pending.pop(task)
                task.result()
                yield index
    finally:
        for task in pending:
            task.cancel()
