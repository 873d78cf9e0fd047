"""`mr worker` cannot be held by one connection, and --mem is a cap (issue 29, finding 9b, 9c).

A worker serves one client at a time. It drops a connection that sends no handshake within 5 s,
and one silent for --idle-timeout, and then serves the next client; mr's own clients send a
keep-alive request when idle, so a loaded model keeps its worker however long it idles (and a
worker lost while a model idles is an error at its next request, never a crash). A buffer that
would take the worker beyond --mem is refused, and the load fails naming the worker.
"""

from __future__ import annotations

import re
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mr.engine import LLM, EngineOptions, SamplingOptions
from mr.errors import ModelLoadError
from support.models import write_tiny_llama
from support.workers import Worker, free_port

GREEDY = SamplingOptions(temperature=0)
HANDSHAKE_S = 5  # mr::rpc::kHandshakeTimeoutMs
MARGIN_S = 4.0  # a loaded machine: process start-up, the load itself
# llama.cpp's RPC handshake: RPC_CMD_HELLO (14), the request's size (8 bytes), its 24 bytes of
# transport capabilities; the answer is its size (8 bytes) then version (4 bytes) and capabilities.
HELLO = bytes([14]) + struct.pack("<Q", 24) + bytes(24)
HELLO_ANSWER = 8 + 4 + 24


@pytest.fixture(scope="module")
def six_layers(smollm2_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_llama(smollm2_path, tmp_path_factory.mktemp("rpc-limits") / "six.gguf", n_layer=6)


def _load(model: Path, worker: Worker) -> LLM:
    return LLM(model, EngineOptions(n_ctx=1024, n_slots=1, rpc=(worker.endpoint,)))


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        assert chunk, "the worker closed the connection during the handshake"
        data += chunk
    return data


def _wait_for_clients(worker: Worker, count: int) -> None:
    deadline = time.monotonic() + 10
    while sum(line.endswith(" connected") for line in worker.clients()) < count:
        assert time.monotonic() < deadline, worker.log.read_text()
        time.sleep(0.05)


def _closed_by_peer(sock: socket.socket) -> bool:
    sock.settimeout(10)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def test_a_connection_that_sends_nothing_is_dropped_and_the_next_client_served(
        six_layers: Path, tmp_path: Path) -> None:
    with Worker(tmp_path) as worker, socket.create_connection(("127.0.0.1", worker.port)) as silent:
        _wait_for_clients(worker, 1)  # it holds the worker
        started = time.monotonic()
        with _load(six_layers, worker) as llm:
            waited = time.monotonic() - started
            assert llm.generate("Hello", GREEDY, max_tokens=2).text()
        assert waited < HANDSHAKE_S + MARGIN_S
        assert _closed_by_peer(silent)
        assert any(line.endswith(f"dropped: it sent no handshake within {HANDSHAKE_S} s")
                   for line in worker.clients()), worker.log.read_text()


def test_a_client_silent_past_the_idle_timeout_is_dropped_and_the_next_served(
        six_layers: Path, tmp_path: Path) -> None:
    with Worker(tmp_path, idle_timeout=5) as worker, \
            socket.create_connection(("127.0.0.1", worker.port)) as idle:
        idle.sendall(HELLO)
        answer = _recv_exactly(idle, HELLO_ANSWER)
        assert struct.unpack("<Q", answer[:8])[0] == HELLO_ANSWER - 8  # greeted: now a client
        started = time.monotonic()
        with _load(six_layers, worker) as llm:
            waited = time.monotonic() - started
            assert llm.generate("Hello", GREEDY, max_tokens=2).text()
        assert waited < 5 + MARGIN_S
        assert _closed_by_peer(idle)
        assert any(line.endswith("dropped: it was silent for 5 s") for line in worker.clients())


def test_a_loaded_model_keeps_its_worker_while_it_idles(six_layers: Path, tmp_path: Path) -> None:
    with Worker(tmp_path, idle_timeout=5) as worker, _load(six_layers, worker) as llm:
        time.sleep(8)  # longer than the idle timeout: the client's keep-alive requests hold it
        assert llm.lost_worker == ""
        assert llm.generate("Hello", GREEDY, max_tokens=4).text()
    assert sum(line.endswith(" connected") for line in worker.clients()) == 1
    assert not any("dropped" in line for line in worker.clients())


IDLE_CLIENT = """
import sys
from mr.engine import LLM, EngineOptions, SamplingOptions
from mr.errors import EngineError
llm = LLM(sys.argv[1], EngineOptions(n_ctx=1024, n_slots=1, rpc=(sys.argv[2],)))
print("loaded", flush=True)
sys.stdin.readline()  # the worker is gone now
try:
    llm.generate("Hello", SamplingOptions(temperature=0), max_tokens=2).text()
except EngineError as exc:
    print("error:", exc, flush=True)
"""


@pytest.mark.parametrize("noticed", [False, True], ids=["at-once", "after-keep-alive"])
def test_a_worker_lost_before_the_first_request_is_an_error_not_a_crash(
        six_layers: Path, tmp_path: Path, noticed: bool) -> None:
    # A compute buffer's base is first asked for at the first decode: with the worker gone it
    # came back null, and ggml asserted (the whole process aborted).
    with Worker(tmp_path) as worker:
        client = subprocess.Popen([sys.executable, "-c", IDLE_CLIENT, str(six_layers), worker.endpoint],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True)
        assert client.stdout is not None and client.stdout.readline().strip() == "loaded"
        worker.kill()
    if noticed:
        time.sleep(3)  # the client's keep-alive request has found the connection gone
    out, err = client.communicate("\n", timeout=120)
    assert client.returncode == 0, err[-3000:]
    assert f"error: lost the connection to the RPC worker at {worker.endpoint}" in out


def test_a_buffer_beyond_the_mem_cap_is_refused_with_a_clear_error(six_layers: Path, tmp_path: Path) -> None:
    with Worker(tmp_path, mem_mib=1) as worker:
        # its share by the memory it offers is the output layer: 6 MiB of F16 weights
        pattern = rf"RPC worker at {re.escape(worker.endpoint)} refused a buffer of \d+ MiB"
        with pytest.raises(ModelLoadError, match=pattern):
            _load(six_layers, worker)
        assert "refused a buffer" in worker.log.read_text()
    with Worker(tmp_path, mem_mib=512) as roomy, _load(six_layers, roomy) as llm:
        assert any(p.host == roomy.endpoint for p in llm.placement)
        assert llm.generate("Hello", GREEDY, max_tokens=2).text()


def test_an_idle_timeout_too_short_for_keep_alive_is_a_usage_error() -> None:
    result = subprocess.run([sys.executable, "-m", "mr", "worker", "--port", str(free_port()),
                             "--idle-timeout", "2"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "at least 5 seconds" in result.stderr
