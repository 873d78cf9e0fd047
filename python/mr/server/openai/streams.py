"""Starting and ending the engine streams of one request (n choices, several prompts)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Protocol, TypeVar

from mr.runner import Lease


class Closable(Protocol):
    def close(self) -> None: ...


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
