"""Waves of concurrent requests straight into mr's engine (no HTTP), on one asyncio loop."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from bench.traces import Trace, Wave

if TYPE_CHECKING:
    from mr.engine import LLM


async def _one(llm: LLM, prompt: str | Sequence[int], max_tokens: int) -> Trace:
    from mr.engine import SamplingOptions

    trace = Trace(start=time.perf_counter())
    stream = llm.agenerate(prompt, SamplingOptions(temperature=0), max_tokens=max_tokens, ignore_eos=True,
                           parse_special=True)
    async for _piece in stream:
        trace.marks.append((time.perf_counter(), stream.n_generated))
    trace.end = time.perf_counter()
    trace.tokens, trace.prompt_tokens = stream.n_generated, stream.n_prompt
    trace.cached_tokens = stream.n_cached
    return trace


async def _wave(llm: LLM, prompts: Sequence[str | Sequence[int]], max_tokens: int) -> Wave:
    start = time.perf_counter()
    traces = await asyncio.gather(*(_one(llm, p, max_tokens) for p in prompts))
    return Wave(list(traces), time.perf_counter() - start)


class Driver:
    """One LLM driven from one event loop (an engine attaches to a single loop for its life)."""

    def __init__(self, llm: LLM) -> None:
        self.llm = llm
        self.loop = asyncio.new_event_loop()

    def wave(self, prompts: Sequence[str | Sequence[int]], max_tokens: int) -> Wave:
        """Send every prompt at once (temperature 0, ignore_eos) and wait for all of them."""
        return self.loop.run_until_complete(_wave(self.llm, prompts, max_tokens))

    def ttft(self, prompt: str | Sequence[int]) -> Trace:
        """One request of one token: its time to first token (and cached-token count)."""
        return self.wave([prompt], 1).traces[0]

    def close(self) -> None:
        self.llm.close()
        self.loop.close()

    def __enter__(self) -> Driver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
