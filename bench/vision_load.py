"""The vision bench's load (bench/vision.py): pictures, one client shape for an OpenAI-compatible
server and for mr's engine in process, and the trials it times: a wave of image requests and a
stall trial (a running text stream while another prompt is admitted).

Every request is a streaming chat at temperature 0 with `ignore_eos`; a trace marks each piece of
text as it arrives, and its usage (prompt, cached tokens) as the server counted it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import itertools
import json
import time
from typing import TYPE_CHECKING, Any, Protocol

import httpx

from bench.http_load import TIMEOUT, Target
from bench.traces import Trace, Wave

if TYPE_CHECKING:
    from collections.abc import Callable

    from mr.engine import LLM

Messages = list[dict[str, Any]]


def picture(seed: int, width: int = 640, height: int = 480) -> bytes:
    """A photo-sized JPEG (a gradient, a few shapes and some grain), different for every seed:
    the kind of picture a client sends, which both servers decode and resize themselves."""
    import numpy as np
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    mix = (0.6 * x / width + 0.4 * y / height)[..., None]
    top, bottom = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    grain = rng.normal(0.0, 6.0, (height, width, 3))
    rgb = (top * (1 - mix) + bottom * mix + grain).clip(0, 255).astype(np.uint8)
    image = Image.fromarray(rgb)
    draw = ImageDraw.Draw(image)
    for _ in range(6):
        x0, y0 = int(rng.integers(0, width)), int(rng.integers(0, height))
        box = (x0, y0, x0 + int(rng.integers(20, width // 3)), y0 + int(rng.integers(20, height // 3)))
        fill = tuple(int(c) for c in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=fill)
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=85)
    return buf.getvalue()


def text_message(text: str) -> Messages:
    return [{"role": "user", "content": text}]


class Client(Protocol):
    """One system under test: how it is sent a picture, and one streaming request."""

    name: str

    def image_message(self, jpeg: bytes, text: str) -> Messages: ...

    async def send(self, messages: Messages, max_tokens: int, trace: Trace | None = None,
                   on_mark: Callable[[], None] | None = None) -> Trace: ...


class HttpClient:
    """An OpenAI-compatible server: the picture as an `image_url` data URL before the text. One
    connection pool for the part's life (kept alive, as a real client keeps it)."""

    def __init__(self, target: Target, connections: int = 16) -> None:
        self.target = target
        self.name = target.name
        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        self.http = httpx.AsyncClient(timeout=TIMEOUT, limits=limits)

    def image_message(self, jpeg: bytes, text: str) -> Messages:
        url = "data:image/jpeg;base64," + base64.b64encode(jpeg).decode()
        return [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}},
                                             {"type": "text", "text": text}]}]

    async def send(self, messages: Messages, max_tokens: int, trace: Trace | None = None,
                   on_mark: Callable[[], None] | None = None) -> Trace:
        trace = trace or Trace(start=time.perf_counter())
        body = {"model": self.target.model, "messages": messages, "max_tokens": max_tokens, "temperature": 0,
                "stream": True, "stream_options": {"include_usage": True}, "ignore_eos": True}
        url = self.target.base_url + "/chat/completions"
        async with self.http.stream("POST", url, json=body, headers=self.target.headers()) as response:
            if response.status_code != 200:
                detail = (await response.aread())[:300]
                raise RuntimeError(f"{self.name}: HTTP {response.status_code}: {detail!r}")
            async for line in response.aiter_lines():
                data = line[5:].strip() if line.startswith("data:") else ""
                if not data:
                    continue
                if data == "[DONE]":
                    break
                _read_chunk(json.loads(data), trace, on_mark)
        trace.end = time.perf_counter()
        return trace

    async def close(self) -> None:
        await self.http.aclose()


def _read_chunk(chunk: dict[str, Any], trace: Trace, on_mark: Callable[[], None] | None) -> None:
    choices = chunk.get("choices") or []
    delta = (choices[0].get("delta") or {}) if choices else {}
    if delta.get("content") or delta.get("reasoning_content"):
        trace.marks.append((time.perf_counter(), len(trace.marks) + 1))
        if on_mark is not None:
            on_mark()
    usage = chunk.get("usage")
    if usage:
        trace.tokens = int(usage.get("completion_tokens", 0))
        trace.prompt_tokens = int(usage.get("prompt_tokens", 0))
        trace.cached_tokens = int((usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0)


class EngineClient:
    """mr's engine in this process, as the server drives it: the chat is prepared (the picture
    decoded by Pillow, the template rendered, the projector's chunks built) in a worker thread,
    then streamed from the engine on this loop."""

    name = "mr-engine"

    def __init__(self, llm: LLM) -> None:
        self.llm = llm

    def image_message(self, jpeg: bytes, text: str) -> Messages:
        from mr.media.source import MediaSource, part

        source = MediaSource(kind="image", field="messages[0].content[0]", data=jpeg, format="image/jpeg")
        return [{"role": "user", "content": [part(source), {"type": "text", "text": text}]}]

    async def send(self, messages: Messages, max_tokens: int, trace: Trace | None = None,
                   on_mark: Callable[[], None] | None = None) -> Trace:
        from mr.engine import SamplingOptions

        trace = trace or Trace(start=time.perf_counter())
        prepared = await asyncio.to_thread(self.llm.prepare_chat, messages)
        chat = self.llm.achat(prepared, SamplingOptions(temperature=0), max_tokens=max_tokens,
                              ignore_eos=True)
        stream = chat.stream
        try:
            async for _piece in stream:
                trace.marks.append((time.perf_counter(), stream.n_generated))
                if on_mark is not None:
                    on_mark()
        finally:
            stream.close()  # a cancelled trial frees its slot
        trace.end = time.perf_counter()
        trace.tokens, trace.prompt_tokens = stream.n_generated, stream.n_prompt
        trace.cached_tokens = stream.n_cached
        return trace


async def wave(client: Client, requests: list[Messages], max_tokens: int = 1) -> Wave:
    """Every request at once; the wall time runs to the last one's end."""
    start = time.perf_counter()
    traces = await asyncio.gather(*(client.send(m, max_tokens) for m in requests))
    return Wave(list(traces), time.perf_counter() - start)


class Stall:
    """One stall trial's outcome: the running stream's largest gap between two pieces of text
    while the intruder was admitted (from its send to its first token), its usual gap before,
    and the intruder's own trace."""

    def __init__(self, gap: float, before: float, intruder: Trace) -> None:
        self.gap, self.before, self.intruder = gap, before, intruder


async def stall(client: Client, stream: Messages, intruder: Messages, stream_tokens: int,
                warm_tokens: int) -> Stall:
    """A text stream runs; once it has `warm_tokens` pieces (steady decoding), `intruder` (one
    token) is sent; the stream is cancelled once it has moved on past the intruder's first token."""
    progress = asyncio.Event()
    running = Trace(start=time.perf_counter())
    task = asyncio.ensure_future(client.send(stream, stream_tokens, running, progress.set))
    try:
        await _until(running, warm_tokens, task, progress)
        admitted = await client.send(intruder, 1)
        done = admitted.start + admitted.ttft
        await _until(running, len(running.marks) + 2, task, progress)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    marks = [t for t, _ in running.marks]
    pairs = list(itertools.pairwise(marks))
    during = [b - a for a, b in pairs if b > admitted.start and a < done]
    before = sorted(b - a for a, b in pairs if b <= admitted.start)
    return Stall(max(during, default=float("nan")), before[len(before) // 2] if before else float("nan"),
                 admitted)


async def _until(trace: Trace, pieces: int, task: asyncio.Future[Trace], progress: asyncio.Event) -> None:
    """Waits until `trace` has `pieces` marks or its request has ended."""
    while len(trace.marks) < pieces and not task.done():
        progress.clear()
        waiter: asyncio.Future[Any] = asyncio.ensure_future(progress.wait())
        await asyncio.wait([task, waiter], return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
    if len(trace.marks) < pieces:
        task.result()  # its error, if it failed
        raise RuntimeError(f"the running stream ended after {len(trace.marks)} pieces, before the trial did")
