"""Loop-thread CPU per streamed token: the Python cost of the event path (event pump and
AsyncStream), with the engine attached to the asyncio loop as in mr serve. A tiny random GGUF
keeps decode cheap. CPU time of the loop thread, not wall time: it compares two trees on a busy
machine better than a throughput does. `python -m bench.event_cost` in each tree, alternately.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from bench.tiny_model import write_tiny_llama
from mr import default_model
from mr.engine import LLM, AsyncStream, EngineOptions, SamplingOptions


async def wave(llm: LLM, n: int, tokens: int) -> float:
    """Microseconds of loop-thread CPU per token while `n` streams of `tokens` run together."""
    streams = [llm.agenerate([10 + i, 11, 12], SamplingOptions(temperature=0), max_tokens=tokens,
                             ignore_eos=True) for i in range(n)]
    t0 = time.thread_time()

    async def drain(stream: AsyncStream) -> None:
        async for _ in stream:
            pass

    await asyncio.gather(*(drain(s) for s in streams))
    return (time.thread_time() - t0) * 1e6 / sum(len(s.tokens) for s in streams)


def main() -> None:
    path = Path(tempfile.gettempdir()) / "mr-event-cost-tiny.gguf"
    if not path.exists():
        write_tiny_llama(default_model.fetch(), path)
    with LLM(path, EngineOptions(n_ctx=8192, n_slots=8, spec="off")) as llm:
        out: dict[int, list[float]] = {n: [] for n in (1, 8)}

        async def run() -> None:
            await wave(llm, 1, 32)
            for _ in range(5):
                for n in out:
                    out[n].append(await wave(llm, n, 400))
        asyncio.run(run())
    for n, values in out.items():
        print(f"{n} stream(s): {statistics.median(values):.1f} us/token loop-thread CPU "
              f"(runs {', '.join(f'{v:.1f}' for v in values)})")


if __name__ == "__main__":
    main()
