"""The serving ceiling: how many streamed tokens per second the HTTP layer carries when the model
costs (almost) nothing. A tiny random-weights model with the real tokenizer (1 layer, 32 wide:
bench/tiny_model.py) makes the server, not the kernels, the bottleneck; mr serve and llama-server
(one slot per client, same context per slot) stream to 16/64/128 clients at once, A B A B.
Three more mr serve variants show what each part of its streaming stack is worth: the event loop
writing the engine's frames to the socket instead of the engine thread itself
(`engine_writes=False`), the plain asyncio event loop instead of uvloop (`loop="asyncio"`, also
loop writes), and the ASGI path for every token (`direct_streams=False`, also asyncio: the serving
path as it was before). These experiment switches are Settings fields with no flag or variable:
the variants set them through mr.cli.serve.serve_with (bench.servers.mr_serve_command).

The load generator must not be the bottleneck, so it is lean: raw asyncio sockets, one connection
per request, frames counted in the received bytes rather than parsed, the token count taken from
the final usage frame. Its own CPU per token is recorded next to the servers' so a reader can tell.
Run it with `python -m bench ceiling`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.core import Measure, paired, ratio
from bench.servers import LLAMA, MR, Server, ServerPool
from bench.tiny_model import write_tiny_llama

if TYPE_CHECKING:
    from bench.context import Context

PART = "ceiling"
LOOP_WRITES, ASYNCIO = "mr-serve (loop writes)", "mr-serve (asyncio loop)"
ASGI = "mr-serve (asyncio, asgi path)"
VARIANTS: dict[str, dict[str, object]] = {
    LOOP_WRITES: {"engine_writes": False},
    ASYNCIO: {"loop": "asyncio", "engine_writes": False},
    ASGI: {"loop": "asyncio", "direct_streams": False}}
LEVELS, QUICK_LEVELS = (16, 64, 128), (4,)
TOKENS, QUICK_TOKENS = 256, 16  # per request
CELLS_PER_SLOT = 512


@dataclasses.dataclass
class Load:
    tokens: int = 0
    wall: float = 0.0
    client_cpu: float = 0.0
    failed: int = 0


def _request(server: Server, n: int, tokens: int) -> bytes:
    t = server.target
    body = json.dumps({"model": t.model, "max_tokens": tokens, "temperature": 0, "stream": True,
                       "ignore_eos": True, "stream_options": {"include_usage": True},
                       "messages": [{"role": "user", "content": f"Tell me a story, number {n}."}]}).encode()
    host = t.base_url.split("//", 1)[1].split("/", 1)[0]
    return (b"POST /v1/chat/completions HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
            b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (host.encode(), len(body), body))


def _completion_tokens(raw: bytes) -> int:
    """completion_tokens of the last usage object in the stream (0 if none)."""
    at = raw.rfind(b'"usage":{')
    if at < 0:
        return 0
    start = raw.index(b"{", at)
    depth = 0
    for end in range(start, len(raw)):
        depth += {ord("{"): 1, ord("}"): -1}.get(raw[end], 0)
        if depth == 0:
            return int(json.loads(raw[start:end + 1]).get("completion_tokens") or 0)
    return 0


async def _one(host: str, port: int, request: bytes) -> int:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(request)
        chunks = []
        while chunk := await reader.read(1 << 16):
            chunks.append(chunk)
    finally:
        writer.close()
    raw = b"".join(chunks)
    return _completion_tokens(raw) if raw.startswith(b"HTTP/1.1 200") else -1


def wave(server: Server, clients: int, seed: int, tokens: int) -> Load:
    host, port = server.target.base_url.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)
    requests = [_request(server, seed + i, tokens) for i in range(clients)]

    async def run() -> list[int]:
        return await asyncio.gather(*(_one(host, int(port), r) for r in requests))

    cpu0, t0 = time.process_time(), time.perf_counter()
    counts = asyncio.run(run())
    load = Load(wall=time.perf_counter() - t0, client_cpu=time.process_time() - cpu0)
    load.tokens = sum(c for c in counts if c > 0)
    load.failed = sum(1 for c in counts if c <= 0)
    return load


def run(ctx: Context) -> None:
    res = ctx.results
    levels, tokens = (QUICK_LEVELS, QUICK_TOKENS) if ctx.budget.quick else (LEVELS, TOKENS)
    top = max(levels)
    with tempfile.TemporaryDirectory(prefix="mr-bench-ceiling-") as tmp:
        model = write_tiny_llama(ctx.model, Path(tmp) / "tiny.gguf", n_layer=1, n_embd=32)
        tiny = dataclasses.replace(ctx, model=model, slots=top, ctx_size=top * CELLS_PER_SLOT, urls=[],
                                   servers=None)
        pool = ServerPool(tiny)
        try:
            servers = [s for s in pool.start() if s.name in (MR, LLAMA) and s.proc is not None]
            if any(s.name == MR for s in servers):
                servers += [v for name, switches in VARIANTS.items()
                            if (v := pool.add_variant(name, switches=switches))]
            if not servers:
                res.note(PART, "no server could be started")
                return
            params: dict[str, Any] = {"model": "tiny random llama (1 layer, n_embd 32, SmolLM2 vocabulary)",
                                      "slots": top, "ctx_per_slot": CELLS_PER_SLOT, "max_tokens": tokens,
                                      "threads": ctx.threads, "client": "raw asyncio sockets, 1 process"}
            for n in levels:
                _level(ctx, servers, n, tokens, params)
        finally:
            pool.close()


def _level(ctx: Context, servers: list[Server], n: int, tokens: int, params: dict[str, Any]) -> None:
    res = ctx.results

    def measured(server: Server, rep: int) -> tuple[Load, float, float]:
        cpu0, main0 = server.cpu_seconds(), server.cpu_seconds(main_thread_only=True)
        load = wave(server, n, 1000 * rep + n, tokens)
        return load, server.cpu_seconds() - cpu0, server.cpu_seconds(main_thread_only=True) - main0

    reps = iter(range(1_000_000))
    runs = paired([lambda s=s: measured(s, next(reps)) for s in servers], max(2, ctx.budget.reps),
                  ctx.deadline(), ctx.settle)
    figures: dict[str, Measure] = {}
    for server, results in zip(servers, runs, strict=True):
        loads = [r[0] for r in results]
        if any(load.failed for load in loads):
            res.note(PART, f"{server.name}@{n}: {sum(load.failed for load in loads)} requests failed")
        figures[server.name] = res.add(Measure(PART, f"aggregate@{n}", server.name, "tok/s",
                                               [ld.tokens / ld.wall for ld in loads if ld.tokens], params))
        res.add(Measure(PART, f"server cpu per token@{n}", server.name, "us/token",
                        [cpu / ld.tokens * 1e6 for ld, cpu, _ in results if ld.tokens], params,
                        note="CPU time of the whole server process per streamed token (the compute "
                             "threads' spin-waits between steps included)"))
        if server.name != LLAMA:
            res.add(Measure(PART, f"event-loop cpu per token@{n}", server.name, "us/token",
                            [main / ld.tokens * 1e6 for ld, _, main in results if ld.tokens], params,
                            note="CPU of mr's event-loop thread per streamed token, per-request work "
                                 "included"))
        res.add(Measure(PART, f"client cpu per token@{n}", server.name, "us/token",
                        [ld.client_cpu / ld.tokens * 1e6 for ld in loads if ld.tokens], params,
                        note="the load generator's own CPU per token: far below the servers' means it "
                             "was not the bottleneck"))
    if MR in figures and LLAMA in figures:
        res.add_ratio(ratio(PART, f"mr-serve / llama-server aggregate@{n} (tiny model)", figures[MR],
                            figures[LLAMA], ">= 1.00" if n == 64 else ""))
    for variant in VARIANTS:
        if MR in figures and variant in figures:
            res.add_ratio(ratio(PART, f"mr-serve / {variant} aggregate@{n}", figures[MR], figures[variant]))
