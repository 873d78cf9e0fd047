"""A streamed answer's bytes straight onto the connection, past the ASGI stack.

Through ASGI a streamed token climbs from the engine to the socket through the stream's task,
several async generators, Litestar's response, the middlewares' send wrappers and h11. For a
plain streamed answer the engine instead renders each chunk as the very bytes that go on the
wire (an SSE frame inside an HTTP/1.1 chunk: mr.engine AsyncStream.go_direct), and the event pump
writes them to the connection's transport while it drains the engine step: one write per token,
no task wake-up. The response's start, first frames and end still go through ASGI, in order;
only what lies between takes the short way.

The HTTP protocol (mr.server.hygiene) hands each request's connection to the app in
`scope["extensions"]["mr.wire"]`. Without one (another server, HTTP/2, a test client), the
routes stream through ASGI as usual.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

WIRE_KEY = "mr.wire"
CAPTURE_KEY = "mr.capture"
Capture = Callable[[bytes, bool], None]  # (frame, chunked): the request log's view of a direct frame


class Wire:
    """One connection's transport, and whether a streamed body is sent in HTTP/1.1 chunks
    (h11 chunks a response without Content-Length to an HTTP/1.1 client; HTTP/1.0 gets the
    raw bytes, delimited by the connection's close)."""

    __slots__ = ("chunked", "transport")

    def __init__(self, transport: asyncio.Transport, chunked: bool) -> None:
        self.transport = transport
        self.chunked = chunked


def wire_of(scope: Any) -> Wire | None:
    extensions = scope.get("extensions") or {}
    wire = extensions.get(WIRE_KEY)
    return wire if isinstance(wire, Wire) else None


def attach(scope: dict[str, Any], wire: Wire) -> None:
    extensions = scope.get("extensions")
    if extensions is None:
        scope["extensions"] = extensions = {}
    extensions[WIRE_KEY] = wire


class DirectWriter:
    """Writes a stream's frames to the transport; notes when each went out (the metrics' token
    times) and offers them to the request log. Once the client is gone it writes nothing more
    and calls `gone` once (the routes cancel their requests)."""

    __slots__ = ("_capture", "_chunked", "_gone", "_times", "_transport")

    def __init__(self, wire: Wire, times: list[float], gone: Callable[[], None],
                 capture: Capture | None) -> None:
        self._transport = wire.transport
        self._chunked = wire.chunked
        self._times = times
        self._gone: Callable[[], None] | None = gone
        self._capture = capture

    def __call__(self, data: bytes) -> None:
        transport = self._transport
        if transport.is_closing():
            gone, self._gone = self._gone, None
            if gone is not None:
                gone()
            return
        transport.write(data)
        self._times.append(time.perf_counter())
        if self._capture is not None:
            self._capture(data, self._chunked)


def capture_of(scope: Any) -> Capture | None:
    extensions = scope.get("extensions") or {}
    return extensions.get(CAPTURE_KEY)
