"""Starting and ending the engine streams of one request (n answers, several prompts)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Protocol, TypeVar

from mr.runner import Lease


class Closable(Protocol):
    def close(self) -> None: ...

    def abort(self, why: str) -> None: ...


S = TypeVar("S", bound=Closable)


def submit_all(lease: Lease, starts: Iterable[Callable[[], S]]) -> list[S]:
    """Start every stream; on any failure the started ones are cancelled and the lease released,
    so nothing stays queued or leased."""
    streams: list[S] = []
    try:
        for start in starts:
            streams.append(start())
            lease.track(streams[-1])
    except BaseException:
        finish_all(lease, streams)
        raise
    return streams


async def asubmit_all(lease: Lease, starts: Iterable[Callable[[], S]], off_loop: bool) -> list[S]:
    """submit_all; in a worker thread when starting is costly (a grammar is compiled when its
    request is submitted: milliseconds to seconds, which must not stall the other clients). A
    caller cancelled meanwhile leaves nothing behind: the streams are finished once started."""
    if not off_loop:
        return submit_all(lease, starts)
    lease.llm.attach(asyncio.get_running_loop())  # the streams' events are drained on this loop
    work = asyncio.ensure_future(asyncio.to_thread(submit_all, lease, starts))  # `starts` may raise
    try:
        return await asyncio.shield(work)
    except asyncio.CancelledError:

        def settle(done: asyncio.Future[list[S]]) -> None:
            if not done.cancelled() and done.exception() is None:
                finish_all(lease, done.result())

        work.add_done_callback(settle)
        raise


def finish_all(lease: Lease, streams: list[S]) -> None:
    """Close the streams and release the lease (idempotent: every way out of a request calls it)."""
    for s in streams:
        s.close()
        lease.untrack(s)
    lease.release()
