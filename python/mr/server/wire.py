"""A streamed answer's bytes straight onto the connection, past the ASGI stack.

Through ASGI a streamed token climbs from the engine to the socket through the stream's task,
several async generators, Litestar's response, the middlewares' send wrappers and h11. For a
plain streamed answer the engine instead renders each chunk as the very bytes that go on the
wire (an SSE frame inside an HTTP/1.1 chunk: mr.engine AsyncStream.go_direct), and the event pump
writes them to the connection's transport while it drains the engine step: one write per token,
no task wake-up. The response's start, first frames and end still go through ASGI, in order;
only what lies between takes the short way.

Shorter still, for a stream of one choice on a plain TCP connection: the engine thread sends the
frames itself (mr._native Engine.decide_wire, cpp/src/wire.cpp) right after the step that made
them, and the event loop hears of the request only at its end. What the socket cannot take at
once (a slow client) comes back as event frames and goes out through the transport, in order.

The HTTP protocol (mr.server.hygiene) hands each request's connection to the app in
`scope["extensions"]["mr.wire"]`. Without one (another server, HTTP/2, a test client), the
routes stream through ASGI as usual.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Protocol, cast

if TYPE_CHECKING:
    from mr.engine.stream import AsyncStream
    from mr.engine.types import WireReport

WIRE_KEY = "mr.wire"
CAPTURE_KEY = "mr.capture"


class Capture(Protocol):
    """The request log's view of bytes that bypass ASGI."""

    def direct_chunk(self, data: bytes, chunked: bool) -> None:
        """A frame written by the transport, HTTP chunk framing and all."""

    def direct_payload(self, payload: bytes, n_bytes: int, first_sent: float | None) -> None:
        """Frames the engine sent itself: their payload (capped), its size, the first one's time."""

    def room(self) -> int:
        """How many more body bytes the log keeps."""


class Wire:
    """One connection's transport, and whether a streamed body is sent in HTTP/1.1 chunks
    (h11 chunks a response without Content-Length to an HTTP/1.1 client; HTTP/1.0 gets the
    raw bytes, delimited by the connection's close). `engine_writes`: the engine thread may send
    a stream's frames to this connection's socket itself."""

    __slots__ = ("chunked", "engine_writes", "transport")

    def __init__(self, transport: asyncio.Transport, chunked: bool, engine_writes: bool = False) -> None:
        self.transport = transport
        self.chunked = chunked
        self.engine_writes = engine_writes

    def socket_fd(self) -> int | None:
        """The plain TCP socket the engine may send to; None behind TLS or without one."""
        transport = self.transport
        if not self.engine_writes or transport.is_closing() or transport.get_extra_info("sslcontext"):
            return None
        sock = transport.get_extra_info("socket")
        return sock.fileno() if sock is not None else None

    def idle(self) -> bool:
        """Nothing queued in the transport: bytes sent from elsewhere now come after all of it."""
        return not self.transport.is_closing() and self.transport.get_write_buffer_size() == 0


def _extension(scope: Mapping[str, object], key: str) -> object:
    extensions = scope.get("extensions")
    return extensions.get(key) if isinstance(extensions, dict) else None


def wire_of(scope: Mapping[str, object]) -> Wire | None:
    wire = _extension(scope, WIRE_KEY)
    return wire if isinstance(wire, Wire) else None


def attach(extensions: dict[str, dict[object, object]], key: str, value: object) -> None:
    """Keep `value` under mr's own `key` of a scope's extensions. ASGI types an extension as a
    dict; mr's keys hold objects that only mr reads back (wire_of, capture_of)."""
    cast(dict[str, object], extensions)[key] = value


class DirectWriter:
    """Writes a stream's frames to the transport; notes when each went out (the metrics' token
    times) and offers them to the request log. Once the client is gone it writes nothing more
    and calls `gone` once (the routes cancel their requests)."""

    __slots__ = ("_capture", "_chunked", "_gone", "_later", "_times", "_transport")

    def __init__(self, wire: Wire, times: list[float], gone: Callable[[], None],
                 capture: Capture | None) -> None:
        self._transport = wire.transport
        self._chunked = wire.chunked
        self._times = times
        self._gone: Callable[[], None] | None = gone
        self._capture = capture
        # While the engine sends too: frames written here come after its own, whose log entry
        # arrives only at the end (engine_sent), so theirs wait for it.
        self._later: list[bytes] | None = None

    def engine_sends(self) -> None:
        if self._capture is not None:  # nothing to keep back without a log
            self._later = []

    def __call__(self, data: bytes, whole: bool = True) -> None:
        """`whole` False: the rest of a frame the engine began sending (its time and its log
        entry are the engine's)."""
        transport = self._transport
        if transport.is_closing():
            gone, self._gone = self._gone, None
            if gone is not None:
                gone()
            return
        transport.write(data)
        if whole:
            self._times.append(time.perf_counter())
            if self._later is not None:
                self._later.append(data)
            elif self._capture is not None:
                self._capture.direct_chunk(data, self._chunked)

    def engine_sent(self, end: WireReport | None) -> int:
        """At a stream's end: what the engine sent itself (its times, its log; None: nothing),
        then what waited for it; returns how many frames the engine sent."""
        times, payload, n_bytes = (end.times, end.payload, end.n_bytes) if end is not None else ([], b"", 0)
        if times:
            self._times.extend(times)
            self._times.sort()
        later, self._later = self._later or [], None
        if self._capture is not None:
            if n_bytes:
                self._capture.direct_payload(payload, n_bytes, times[0] if times else None)
            for data in later:
                self._capture.direct_chunk(data, self._chunked)
        return len(times)


def capture_of(scope: Mapping[str, object]) -> Capture | None:
    return cast("Capture | None", _extension(scope, CAPTURE_KEY))  # only the request log sets it


def engine_wire(wire: Wire | None, n_streams: int, capture: Capture | None) -> tuple[int, int] | None:
    """(socket fd, log bytes) for a submit whose frames the engine may send itself: one stream
    (several would interleave their writes with the transport's), a plain TCP socket."""
    if wire is None or n_streams != 1:
        return None
    fd = wire.socket_fd()
    if fd is None:
        return None
    return fd, capture.room() if capture is not None else 0


def go_direct(streams: Sequence[AsyncStream], write: DirectWriter, wire: Wire) -> None:
    """Each stream's frames to `write` from now on (AsyncStream.go_direct); the engine sends
    them itself where it was given the socket and nothing waits in the transport before them."""
    engine = wire.idle()
    if engine and any(s.wired for s in streams):
        write.engine_sends()
    for s in streams:
        s.go_direct(write, engine)
