"""Starting and ending the engine streams of one request (n choices, several prompts)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any, Protocol, TypeVar

from mr.runner import Lease
from mr.server import sse
from mr.server.context import ServerContext
from mr.server.errors import stream_error
from mr.server.openai import results


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


def finish_all(lease: Lease, streams: list[S]) -> None:
    for s in streams:
        s.close()
        lease.untrack(s)
    lease.release()


async def sse_response(ctx: ServerContext, lease: Lease, streams: list[Any], frames: sse.ChunkFrames,
                       include_usage: bool, choices: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """An SSE body: the choice frames, then the usage frame (when asked) and `[DONE]`. An error
    mid-way becomes an error event; the streams are finished whatever happens."""
    try:
        async for frame in choices:
            yield frame
        usage = results.usage([s.usage for s in streams])
        ctx.metrics.usage(lease.model.name, usage)
        if include_usage:
            yield frames.usage_frame(usage)
        yield sse.DONE
    except Exception as exc:
        yield sse.event(stream_error(exc))
    finally:
        finish_all(lease, streams)
