"""The asyncio face: events drained by the loop through the engine's file descriptor."""

from __future__ import annotations

import asyncio
import threading

from mr.engine import SamplingOptions

GREEDY = SamplingOptions(temperature=0)


def test_async_matches_sync_and_uses_no_pump_thread(tiny_gguf) -> None:
    from mr.engine import LLM, EngineOptions

    # deterministic: the async run decodes both prompts in shared steps, the sync one one at a time
    with LLM(tiny_gguf, EngineOptions(n_ctx=1024, n_slots=4, deterministic=True)) as llm:
        expected = [llm.generate(p, GREEDY, max_tokens=12, ignore_eos=True).text() for p in ("a", "b c")]

        async def main() -> list[str]:
            streams = [llm.agenerate(p, GREEDY, max_tokens=12, ignore_eos=True) for p in ("a", "b c")]
            return list(await asyncio.gather(*(s.text() for s in streams)))

        pumps_before = sum(t.name == "mr-event-pump" for t in threading.enumerate())
        assert pumps_before >= 1  # this LLM's thread, before a loop attached it
        assert asyncio.run(main()) == expected
        assert sum(t.name == "mr-event-pump" for t in threading.enumerate()) == pumps_before - 1


def test_task_cancellation_cancels_the_request(tiny_gguf) -> None:
    from mr.engine import LLM, EngineOptions

    with LLM(tiny_gguf, EngineOptions(n_ctx=512, n_slots=1)) as llm:

        async def main() -> str:
            stream = llm.agenerate("x", GREEDY, max_tokens=400, ignore_eos=True)

            async def consume() -> None:
                async for _ in stream:
                    pass

            task = asyncio.create_task(consume())
            await asyncio.sleep(0.05)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            # the slot is free again: the next request runs to completion
            after = llm.agenerate("y", GREEDY, max_tokens=4, ignore_eos=True)
            await after.text()
            return f"{stream.finish_reason}/{after.finish_reason}"

        assert asyncio.run(main()) == "cancelled/length"
