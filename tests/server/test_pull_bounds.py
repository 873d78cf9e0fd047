"""Server-side pulls (issue 12 item 9): their own bounded threads, cancelled when the client
leaves, never waited on at shutdown."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import httpx
import pytest

from support.registry_stub import Fault, StubRegistry
from support.serving import serve_client, wait_for


@pytest.fixture
def trickling(store_root: Path):
    """A registry serving ai/tiny whose weights come one byte every 50 ms."""
    from mr.store import Store

    stub = StubRegistry()
    store = Store(store_root)
    stub.add_from_store(store, "ai/tiny", "ai/tiny", "latest")
    for digest in store.resolve("ai/tiny").files:
        stub.faults.append(Fault(f"/blobs/{digest}", "trickle", times=99, delay=0.05))
    try:
        yield stub
    finally:
        stub.close()


@pytest.mark.parametrize("route", ["/models/create", "/api/pull"])
def test_a_client_that_leaves_cancels_its_pull(trickling: StubRegistry, tmp_path: Path, route: str) -> None:
    from mr.server import progress

    body = {"from": f"{trickling.host}/ai/tiny"} if route == "/models/create" else {
        "model": f"{trickling.host}/ai/tiny", "stream": False}
    with serve_client(tmp_path / "fresh", tmp_path) as c:
        if route == "/models/create":  # it streams progress (every 0.25 s on a slow link): leave mid-way
            with c.stream("POST", route, json=body, timeout=httpx.Timeout(30, read=5)) as reply:
                assert reply.status_code == 200
                assert wait_for(lambda: progress.active() == 1, 10)
        else:
            with pytest.raises(httpx.ReadTimeout):
                c.post(route, json=body, timeout=httpx.Timeout(30, read=1.5))  # gives up, closes
        # the pull kept its thread for over 13 minutes after the client left before
        assert wait_for(lambda: progress.active() == 0, 10), "the pull outlived its client"
        assert c.get("/health").status_code == 200


def test_shutdown_does_not_wait_on_a_pull(trickling: StubRegistry, tmp_path: Path) -> None:
    import threading

    from mr.server import progress

    with serve_client(tmp_path / "fresh", tmp_path) as c:
        worker = threading.Thread(target=lambda: _quietly(c, trickling), daemon=True)
        worker.start()
        assert wait_for(lambda: progress.active() == 1, 10)
        started = time.monotonic()
    assert time.monotonic() - started < 10  # the server stopped without waiting for the pull
    assert wait_for(lambda: progress.active() == 0, 10)


def _quietly(c: httpx.Client, stub: StubRegistry) -> None:
    with contextlib.suppress(httpx.HTTPError):
        c.post("/models/create", json={"from": f"{stub.host}/ai/tiny"}, timeout=60)
