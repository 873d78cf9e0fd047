"""The SSE body of a streamed OpenAI response (chat or completions, n choices)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from mr.engine import AsyncChatStream, AsyncStream
from mr.server import sse
from mr.server.errors import stream_error
from mr.server.generation import Running
from mr.server.metrics import StreamTimer
from mr.server.openai import results


async def sse_response(running: Running[AsyncChatStream] | Running[AsyncStream], frames: sse.ChunkFrames,
                       include_usage: bool,
                       choices: AsyncIterator[bytes], timer: StreamTimer) -> AsyncIterator[bytes]:
    """The choice frames, then the usage frame (when asked) and `[DONE]`. An error mid-way
    becomes an error event; the streams are finished and the latencies recorded whatever
    happens."""
    try:
        async for frame in choices:
            yield frame
        usage = results.usage([s.usage for s in running.streams])
        running.ctx.metrics.usage(running.lease.model.name, usage)
        if include_usage:
            yield frames.usage_frame(usage)
        yield sse.DONE
    except Exception as exc:
        yield sse.event(stream_error(exc))
    finally:
        running.finish()
        timer.done()
