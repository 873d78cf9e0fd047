"""HTTP below the application: read deadlines for slow clients, and the connection handed to
the streaming routes (mr.server.wire).

uvicorn times out only idle keep-alive connections: a client that sends its headers, or its
body, a byte every few seconds (slowloris) holds a connection forever. This protocol closes a
connection whose request headers are not complete `header_timeout` seconds after the first
byte (or after connecting), or whose body is not complete `body_timeout` seconds after its
headers. Content-Length together with Transfer-Encoding is a 400 that closes the connection, on
every path: the protocol wraps the whole application in the rule (mr.server.security), since
Litestar's middleware never sees a path it has no route for.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from mr.server import wire
from mr.server.security import refuse_two_framings


def guarded_protocol(header_timeout: float, body_timeout: float, direct: bool = True,
                     engine_writes: bool = True) -> type[H11Protocol]:
    """`direct`: hand each request its connection, for streams written past ASGI (mr.server.wire);
    `engine_writes`: the engine thread may send to its socket itself."""

    class GuardedH11Protocol(_Guarded):
        HEADER_TIMEOUT = header_timeout
        BODY_TIMEOUT = body_timeout
        DIRECT = direct
        ENGINE_WRITES = engine_writes

    return GuardedH11Protocol


class _Guarded(H11Protocol):
    HEADER_TIMEOUT = 10.0
    BODY_TIMEOUT = 120.0
    DIRECT = True
    ENGINE_WRITES = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.app = refuse_two_framings(self.app)
        self._deadline_timer: asyncio.TimerHandle | None = None
        self._phase: tuple[object, float] | None = None  # (h11 state being timed, deadline)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(time.monotonic())

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._arm(time.monotonic())

    def handle_events(self) -> None:
        super().handle_events()
        cycle = self.cycle  # a new request's task is created, not yet started: its scope can grow
        if self.DIRECT and cycle is not None and wire.wire_of(cycle.scope) is None:
            scope = cycle.scope
            extensions = scope.get("extensions")
            if extensions is None:
                scope["extensions"] = extensions = {}
            chunked = scope["http_version"] == "1.1"
            wire.attach(extensions, wire.WIRE_KEY, wire.Wire(self.transport, chunked, self.ENGINE_WRITES))

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self, now: float) -> None:
        state: object = self.conn.their_state
        if state is h11.IDLE and self.conn.our_state is not h11.IDLE:
            state = None  # between a response and the next request: keep-alive's own timer
        limits: dict[object, float] = {h11.IDLE: self.HEADER_TIMEOUT, h11.SEND_BODY: self.BODY_TIMEOUT}
        if state not in limits:
            self._disarm()
            return
        if self._phase is not None and self._phase[0] is state:
            return  # the deadline runs from the phase's start, not from the last byte
        self._disarm()
        self._phase = (state, now + limits[state])
        self._deadline_timer = self.loop.call_later(limits[state], self._expired, state)

    def _disarm(self) -> None:
        if self._deadline_timer is not None:
            self._deadline_timer.cancel()
            self._deadline_timer = None
        self._phase = None

    def _expired(self, state: object) -> None:
        self._deadline_timer = None
        if self.conn.their_state is state and not self.transport.is_closing():
            self.logger.info("closing a connection that was too slow to send its request")
            self.transport.close()
