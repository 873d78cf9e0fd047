"""The soak test (issue 12, soak suite): a minute of mixed traffic (scripts/soak.sh runs longer,
MR_SOAK_SECONDS), then every request is accounted for (completed or a clean error), slots are
idle, queues empty, RSS grew less than 5% after warm-up and open fds are back to the baseline."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import httpx
import pytest
from _serving import wait_for
from _soak import Soak, fds, rss

from conftest import TINY, serve

SECONDS = float(os.environ.get("MR_SOAK_SECONDS", "60"))
WARMUP = min(20.0, SECONDS / 4)


def _idle(url: str) -> bool:
    models = httpx.get(f"{url}/engines/ps", timeout=10).json()
    return all(m["busy_slots"] == 0 and m["queued"] == 0 and m["active_requests"] == 0 for m in models)


def _settled(url: str) -> tuple[int, dict[int, str]]:
    """RSS and open fds in one comparable state: idle, the model unloaded by its keep-alive,
    the freed memory handed back (as the runner does after each unload)."""
    from mr.runner.trim import release_freed_memory

    assert wait_for(lambda: _idle(url), 30), "slots or queues still busy"
    assert wait_for(lambda: httpx.get(f"{url}/engines/ps", timeout=10).json() == [], 30)
    _threads_settled()  # an unloaded engine stops in a worker thread: its memory goes with it
    release_freed_memory()
    return rss(), fds()


def _threads_settled(quiet: float = 1.5, limit: float = 20.0) -> None:
    """Until this process's thread count (engine and compute threads included) has not changed
    for `quiet` seconds."""
    last, since, deadline = -1, time.monotonic(), time.monotonic() + limit
    while time.monotonic() < deadline:
        now = len(os.listdir("/proc/self/task"))
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return
        time.sleep(0.1)


@pytest.mark.slow
def test_soak(store_root: Path, tmp_path: Path) -> None:
    with serve(store_root, tmp_path, ctx_size=1024, parallel=2, max_queue=4, keep_alive=3.0) as server:
        soak = Soak(server.url, TINY)
        asyncio.run(soak.run(WARMUP))  # warm-up: first loads, allocator arenas, caches
        soak.report.rss_start, soak.report.fds_start = _settled(server.url)
        asyncio.run(soak.run(SECONDS))
        assert wait_for(lambda: _idle(server.url), 30), "slots or queues still busy after the soak"
        soak.report.rss_end, soak.report.fds_end = _settled(server.url)
        # the server's side of the last keep-alive connections closes a moment after the client's
        if len(soak.report.fds_end) > len(soak.report.fds_start):
            wait_for(lambda: len(fds()) <= len(soak.report.fds_start), 15)
            soak.report.fds_end = fds()
        print("\n" + soak.report.summary())
    report = soak.report
    assert not report.unaccounted, report.unaccounted[:10]
    assert report.requests > 50
    assert report.rss_end < report.rss_start * 1.05, report.summary()
    assert len(report.fds_end) <= len(report.fds_start), report.summary()
