"""The engine thread sends a request's frames to its socket itself (cpp/src/wire.cpp): held until
the server decides, then sent, or handed back in events; a socket that cannot take a frame whole
hands the rest back, in order. A socketpair stands in for the client's connection."""

from __future__ import annotations

import socket
import time

import pytest

from mr import _native

HEAD, TAIL = b'data: {"t":"', b'"}\n\n'
REST = _native.Engine.REST_OF_FRAME


@pytest.fixture(scope="module")
def engine(tiny_gguf):
    engine = _native.Engine(_native.Model(str(tiny_gguf)), _native.EngineParams(n_ctx=2048, n_slots=2))
    yield engine
    engine.shutdown()


def submit(engine: _native.Engine, fd: int, n: int, log: int = 1 << 20) -> int:
    return engine.submit(_request(list(range(10, 20)), n, _native.FrameFormat(HEAD, TAIL), fd, log))


def _request(prompt: list[int], n: int, frame: _native.FrameFormat, fd: int, log: int = 0) -> _native.Request:
    request = _native.Request(max_tokens=n, ignore_eos=True, frame=frame, wire_fd=fd, wire_log=log)
    request.prompt = prompt
    return request


def run(engine: _native.Engine, request_id: int, decide: bool | None, reader: socket.socket | None = None,
        read_after: float = 0.0) -> tuple[list[_native.Event], bytes]:
    """Every event of the request and every byte read from the socket, in order."""
    events, received, started = [], bytearray(), time.monotonic()
    if decide is not None:
        engine.decide_wire(request_id, decide)
    while not events or not events[-1].finished:
        events += [e for e in engine.poll(100) if e.id == request_id]
        if reader is not None and time.monotonic() - started > read_after:
            received += _read_all(reader)
    if reader is not None:
        received += _read_all(reader)
    return events, bytes(received)


def _read_all(reader: socket.socket) -> bytes:
    out = bytearray()
    while True:
        try:
            chunk = reader.recv(1 << 16, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return bytes(out)
        if not chunk:
            return bytes(out)
        out += chunk


def frames(data: bytes) -> list[bytes]:
    assert data.endswith(TAIL) or not data
    return [f for f in data.split(TAIL) if f]


def test_an_open_wire_gets_every_frame_and_no_token_event(engine) -> None:
    ours, theirs = socket.socketpair()
    with ours, theirs:
        request = submit(engine, ours.fileno(), 200)  # long enough to outlast the decision
        events, received = run(engine, request, True, theirs)
    assert len(events) == 1 and events[0].finish == _native.Finish.LENGTH  # no wake-up per token
    times, log, n_bytes = events[0].wire_times, events[0].wire_log, events[0].wire_bytes
    sent = frames(received)
    assert all(f.startswith(HEAD) for f in sent) and len(sent) == len(times) > 10
    assert log == received and n_bytes == len(received)  # not chunked: the payload is the frame
    assert times == sorted(times) and abs(times[-1] - time.perf_counter()) < 30  # perf_counter's clock


def test_a_released_wire_hands_the_frames_back_in_events(engine) -> None:
    ours, theirs = socket.socketpair()
    with ours, theirs:
        request = submit(engine, ours.fileno(), 20)
        events, received = run(engine, request, False, theirs)
    assert received == b""
    handed = b"".join(e.frame for e in events if e.frame is not None)
    assert len(frames(handed)) >= 10 and events[-1].has_wire
    assert (events[-1].wire_times, events[-1].wire_log, events[-1].wire_bytes) == ([], b"", 0)


def test_an_answer_that_ends_before_the_decision_comes_back_whole(engine) -> None:
    ours, theirs = socket.socketpair()
    with ours, theirs:
        request = submit(engine, ours.fileno(), 8)
        events, _ = run(engine, request, None)  # the server never decides
        assert _read_all(theirs) == b""
    assert len(frames(b"".join(e.frame for e in events if e.frame is not None))) >= 4
    engine.decide_wire(request, True)  # too late: ignored, nothing breaks


def test_a_full_socket_hands_the_rest_back_in_order(engine) -> None:
    ours, theirs = socket.socketpair()
    with ours, theirs:
        ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        theirs.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        request = submit(engine, ours.fileno(), 1500)  # far more than the two buffers hold
        events, early = run(engine, request, True, theirs, read_after=60)  # nobody reads meanwhile
    handed = [e for e in events if e.frame is not None]
    assert handed and all(e.token >= 0 for e in handed[1:])  # the first may be a frame's rest, then tokens
    # what the server would send after the engine
    whole = early + b"".join(e.frame for e in handed if e.frame is not None)
    sent = frames(whole)
    assert len(sent) >= 1000 and all(f.startswith(HEAD) for f in sent)
    times, log, n_bytes = events[-1].wire_times, events[-1].wire_log, events[-1].wire_bytes
    assert 0 < len(times) < len(sent) and whole.startswith(log) and n_bytes >= len(early)


def test_a_wire_needs_a_frame_format_and_a_socket(engine) -> None:
    ours, theirs = socket.socketpair()
    with ours, theirs, pytest.raises(ValueError, match="frame format"):
        engine.submit(_request([10, 11], 4, _native.FrameFormat(), ours.fileno()))
    with pytest.raises(ValueError, match="socket"):
        submit(engine, 10_000, 4)  # not an open descriptor


def test_a_stream_writes_what_the_engine_gives_back_after_what_it_sent(tiny_gguf) -> None:
    """AsyncStream.go_direct with engine writes: the frames a full socket hands back reach the
    server's writer in order, the rest of a half-sent frame marked as such."""
    import asyncio

    from mr.engine import LLM, EngineOptions, SamplingOptions
    from mr.engine.types import WireReport

    async def main(llm: LLM) -> tuple[bytes, list[tuple[bytes, bool]], WireReport | None]:
        ours, theirs = socket.socketpair()
        with ours, theirs:
            ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
            theirs.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            stream = llm.agenerate([10, 11, 12], SamplingOptions(temperature=0), max_tokens=1500,
                                   ignore_eos=True, frame=(HEAD, TAIL, False), wire=(ours.fileno(), 0))
            written: list[tuple[bytes, bool]] = []
            stream.go_direct(lambda data, whole: written.append((data, whole)), engine_writes=True)
            await stream.wait()
            return _read_all(theirs), written, stream.wire_end

    with LLM(tiny_gguf, EngineOptions(n_ctx=2048, n_slots=1)) as llm:
        sent, written, end = asyncio.run(main(llm))
    assert sent and written and all(whole for _, whole in written[1:])
    whole = frames(sent + b"".join(data for data, _ in written))
    assert len(whole) >= 1000 and all(f.startswith(HEAD) for f in whole)
    assert end is not None and 0 < len(end.times) < len(whole)
