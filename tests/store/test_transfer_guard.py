"""A pull is bounded (RELIABILITY 34, issue 12 item 9): a registry that trickles one byte at a
time is dropped below a minimum rate, a cancel or a deadline stops a pull mid-read at once,
and registry error and token bodies are read with a size cap."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from mr.store import Store, package_gguf
from mr.store.errors import RegistryError
from mr.store.pull import pull
from mr.store.registry import RegistryClient, RetryPolicy
from mr.store.transfer import TransferAbortedError, TransferGuard
from support.registry_stub import Fault, StubRegistry


@pytest.fixture
def served(stub: StubRegistry, make_gguf, tmp_path: Path):
    source = Store(tmp_path / "source")
    model = package_gguf(source, make_gguf(rows=4096), "m")
    stub.add_from_store(source, "m", "test/m", "v1")
    return model


def _client(stub: StubRegistry, guard: TransferGuard) -> RegistryClient:
    return RegistryClient(stub.host, retry=RetryPolicy(attempts=4, base_s=0.001, cap_s=0.01),
                          timeout=(5, 5), guard=guard)


def _trickle(stub: StubRegistry, model) -> None:
    digest = model.manifest.weights[0].digest
    stub.faults.append(Fault(f"/blobs/{digest}", "trickle", times=99, delay=0.05))  # 20 B/s < read timeout


def test_a_trickling_registry_is_dropped_below_the_minimum_rate(stub, served, store) -> None:
    _trickle(stub, served)
    guard = TransferGuard(min_rate=1024, window_s=1.5)
    started = time.monotonic()
    with pytest.raises(TransferAbortedError, match="slower than 1024 bytes/s"):
        pull(store, f"{stub.host}/test/m:v1", client=_client(stub, guard))
    assert time.monotonic() - started < 10  # kept alive for over 13 minutes before
    assert store.list() == []
    assert store.layout.partial_path(served.manifest.weights[0].digest).exists()  # resumable


@pytest.mark.parametrize("how", ["cancel", "deadline"])
def test_cancel_and_deadline_stop_a_blocked_read(stub, served, store, how: str) -> None:
    _trickle(stub, served)
    guard = TransferGuard(min_rate=0, deadline_s=1.0 if how == "deadline" else 3600)
    failure: list[BaseException] = []

    def work() -> None:
        try:
            pull(store, f"{stub.host}/test/m:v1", client=_client(stub, guard))
        except BaseException as exc:
            failure.append(exc)

    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    time.sleep(0.5)
    if how == "cancel":
        guard.cancel("the client went away")
    worker.join(5)
    assert not worker.is_alive(), "the pull thread kept reading"
    assert isinstance(failure[0], TransferAbortedError)
    assert ("went away" if how == "cancel" else "deadline") in str(failure[0])


def test_error_bodies_are_read_with_a_cap(stub, served, store) -> None:
    huge = b'{"errors": [{"message": "' + b"x" * (8 << 20) + b'"}]}'
    stub.faults.append(Fault("/manifests/", "status", status=400, times=99, body=huge))
    with pytest.raises(RegistryError, match="HTTP 400") as info:
        pull(store, f"{stub.host}/test/m:v1", client=_client(stub, TransferGuard()))
    assert "xxxx" not in str(info.value)  # 8 MiB were read into memory and parsed before
