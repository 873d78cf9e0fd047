"""HTTP hygiene of `mr serve` (RELIABILITY 33, issue 12 item 9b): Content-Length together with
Transfer-Encoding is a 400 and the connection closes; slow headers and bodies (slowloris) are
dropped after their deadlines. Raw sockets: an HTTP client library would not misbehave so."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.serving import free_port, start, wait_healthy


@pytest.fixture(scope="module")
def port(store_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    env = {"MR_MODELS_DIR": str(store_root), "MR_HOME": str(tmp_path_factory.mktemp("hygiene")),
           "MR_PORT": str(free_port())}
    proc = start(["--quiet", "--header-timeout", "1", "--body-timeout", "2"], env)
    try:
        wait_healthy(f"http://127.0.0.1:{env['MR_PORT']}", proc)
        yield int(env["MR_PORT"])
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


def _read_all(sock: socket.socket, timeout: float) -> tuple[bytes, float]:
    """Everything until the server closes; and how long that took."""
    sock.settimeout(timeout)
    started, data = time.monotonic(), b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return data, time.monotonic() - started
        data += chunk


def test_content_length_with_transfer_encoding_is_400_and_closes(port: int) -> None:
    smuggled = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Content-Type: application/json\r\nContent-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"0\r\n\r\nGET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(smuggled)
        data, _ = _read_all(sock, 10)
    assert data.startswith(b"HTTP/1.1 400"), data[:200]
    assert data.count(b"HTTP/1.1 ") == 1  # the second request never got an answer on this socket
    assert b"bad_framing" in data


# Every kind of path: a route, one Litestar does not know (404, no route middleware runs), a known
# path with the wrong method (405), a path spelling Litestar normalises, an open liveness path.
@pytest.mark.parametrize(("method", "path"), [("POST", "/nope"), ("DELETE", "/v1/chat/completions"),
                                              ("POST", "//v1/embeddings/"), ("GET", "/health"),
                                              ("POST", "/api/chat")])
def test_content_length_with_transfer_encoding_is_400_and_closes_on_every_path(
        port: int, method: str, path: str) -> None:
    """Guards the CL+TE rule outside the routes: before the fix, `POST /nope` got a 404 and the
    pipelined request its own 200 on the same socket (two answers: the framing was trusted)."""
    smuggled = (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode()
                + b"Content-Type: application/json\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"0\r\n\r\nGET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(smuggled)
        data, _ = _read_all(sock, 10)
    assert data.startswith(b"HTTP/1.1 400"), data[:200]
    assert data.count(b"HTTP/1.1 ") == 1, data  # one answer, then the server closed the connection
    assert b"bad_framing" in data


@pytest.mark.parametrize("phase", ["nothing", "headers", "body"])
def test_slow_clients_are_dropped(port: int, phase: str) -> None:
    with socket.create_connection(("127.0.0.1", port)) as sock:
        if phase != "nothing":
            sock.sendall(b"POST /v1/embeddings HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        if phase == "body":
            sock.sendall(b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n")
        sock.settimeout(0.3)
        started = time.monotonic()
        closed = False
        while time.monotonic() - started < 8:  # one byte every 0.3 s: never idle long
            try:
                sock.sendall(b"x" if phase == "body" else b"X-Slow: 1\r\n" if phase == "headers" else b"")
                if sock.recv(65536) == b"":
                    closed = True
                    break
            except TimeoutError:
                continue
            except OSError:
                closed = True
                break
        elapsed = time.monotonic() - started
    assert closed, f"a slow {phase} connection was kept for 8 s"
    assert elapsed < 5
