"""An LLM works from sync code after asyncio code (and from a second asyncio.run), and is freed
when its last reference is dropped without close() (issue 12 items 5 and 11)."""

from __future__ import annotations

import asyncio
import gc
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mr.engine import LLM, EngineOptions, SamplingOptions

GREEDY = SamplingOptions(temperature=0)


def _within(seconds: float, work: Callable[[], Any]) -> Any:
    """`work()`, failing (not hanging the suite) when it does not return in time."""
    out: dict[str, Any] = {}

    def target() -> None:
        try:
            out["value"] = work()
        except BaseException as exc:  # re-raised in the test's thread
            out["error"] = exc

    worker = threading.Thread(target=target, daemon=True)
    worker.start()
    worker.join(seconds)
    assert not worker.is_alive(), f"blocked for more than {seconds}s"
    if "error" in out:
        raise out["error"]
    return out["value"]


def test_sync_after_async_and_a_second_asyncio_run(tiny_gguf: Path) -> None:
    with LLM(tiny_gguf, EngineOptions(n_ctx=256, n_slots=1)) as llm:
        async def once() -> int:
            stream = llm.agenerate("a", GREEDY, max_tokens=3, ignore_eos=True)
            await stream.text()
            return stream.n_generated

        assert asyncio.run(once()) == 3
        sync = _within(20, lambda: llm.generate("a", GREEDY, max_tokens=3, ignore_eos=True))
        _within(20, sync.text)  # blocked forever before: nobody drained the events any more
        assert sync.n_generated == 3
        assert asyncio.run(once()) == 3  # raised "already attached to another event loop" before
        again = llm.generate("a", GREEDY, max_tokens=2, ignore_eos=True)
        _within(20, again.text)
        assert again.n_generated == 2


def _threads() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise AssertionError("no thread count")


def _settled(expected: int, timeout: float = 10) -> int:
    deadline = time.monotonic() + timeout
    while _threads() > expected and time.monotonic() < deadline:
        gc.collect()
        time.sleep(0.05)
    return _threads()


def test_an_llm_that_is_dropped_is_freed(tiny_gguf: Path) -> None:
    gc.collect()
    baseline = _settled(_threads())
    for _ in range(3):
        llm = LLM(tiny_gguf, EngineOptions(n_ctx=256, n_slots=1))
        stream = llm.generate("a", GREEDY, max_tokens=2, ignore_eos=True)
        stream.text()
        assert _threads() > baseline  # the engine and pump threads
        del llm, stream  # never closed
        assert _settled(baseline) == baseline, "the engine of a dropped LLM kept running"
