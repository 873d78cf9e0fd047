"""Speculative decoding: mr with `--spec auto` and `--spec off` (and `auto` in llama-server's
per-slot KV layout), llama-server from the same tree with each of its n-gram `--spec-type`s, and
llama-bench tg128, side by side in one run.

Four workloads, each a chat request answered at temperature 0 (no ignore_eos: a draft follows
the answer the model really gives):
- code-edit: a 35-line Python file in the prompt, rewritten with one function renamed (the
  answer copies the file);
- rag-quote: passages in the prompt, an answer asked to quote them;
- json-extract: records in prose, extracted as a JSON array (keys repeat);
- free-writing: a story (little to draft: the cost of trying).
The four requests are pinned in bench/spec_workloads.json (the code and the passages as they were
at ca5ce2d), so runs on different commits answer the same prompts.
At each level N (1, 4, 8; 1 and 2 in a --quick run) N copies of the request go at once; the
figure is decode tok/s: each stream's tokens after its first, over the time from its first token
to its last, summed over the streams. mr's acceptance (kept / drafted, from /engines/ps) is
recorded with each figure.
A server that fails at a level (it exits, a stream breaks) is recorded as failed there, started
again, and measured at the next level. Run it with `python -m bench spec`.
"""

from __future__ import annotations

import asyncio
import functools
import json
import math
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from bench.core import Measure, paired, ratio
from bench.http_load import TIMEOUT, Target
from bench.llama_runs import available, llama_bench
from bench.servers import MODEL_NAME, Server, _spawn, free_port, package_mr, start_mr

if TYPE_CHECKING:
    from collections.abc import Callable

    from bench.context import Context

PART = "spec"
MR_AUTO, MR_OFF = "mr-serve spec auto", "mr-serve spec off"
# llama-server's layout (-np 8: one KV stream per slot), beside mr's default shared cache (where
# each sequence's cells fill 64-cell pages of their own, vendor/patches/0013): per slot, a 64-row
# tile of a long draft attends over its own stream's cells only, but steps whose slots carry
# drafts of unequal lengths are split (llama.cpp's equal split across streams).
MR_AUTO_PER_SLOT = "mr-serve spec auto (per-slot kv)"
LLAMA_TYPES = ("ngram-simple", "ngram-map-k", "ngram-mod")
LEVELS, QUICK_LEVELS = (1, 4, 8), (1, 2)
MAX_TOKENS, QUICK_TOKENS = 320, 24  # per stream
SLOT_TOKENS = 1536
WORKLOADS = Path(__file__).with_name("spec_workloads.json")
# llama-server's own default logical batch (-b). Its users keep it: with 512 (the suite's --batch)
# 8 slots drafting ngram-mod's 64 tokens each need 520 and the server aborts (GGML_ASSERT in
# handle_last_sampled_token). The physical batch (-ub) stays the suite's, as mr computes it.
LLAMA_SERVER_BATCH = 2048


def workloads() -> dict[str, str]:
    """The four requests, in order (code-edit, rag-quote, json-extract, free-writing)."""
    loaded: dict[str, str] = json.loads(WORKLOADS.read_text())
    return loaded


def run(ctx: Context) -> None:
    import dataclasses
    import tempfile

    # Each of 8 slots holds a prompt of up to about 900 tokens and its answer (llama-server gives
    # each slot ctx-size / parallel).
    slots = max(ctx.slots, *_shape(ctx)[0])
    ctx = dataclasses.replace(ctx, slots=slots, ctx_size=max(ctx.ctx_size, slots * SLOT_TOKENS))
    home = Path(tempfile.mkdtemp(prefix="mr-bench-spec-"))
    package_mr(ctx, home)
    starters: list[Callable[[], Server]] = [
        lambda: start_mr(ctx, home, MR_AUTO, {"MR_SPEC": "auto"}),
        lambda: start_mr(ctx, home, MR_OFF, {"MR_SPEC": "off"}),
        lambda: start_mr(ctx, home, MR_AUTO_PER_SLOT, {"MR_SPEC": "auto", "MR_PER_SLOT_KV": "1"})]
    exe = available("llama-server", ctx.build_tools)
    if exe is None:
        ctx.results.note(PART, "llama-server is not built: no llama.cpp speculation to compare with")
    else:
        starters += [functools.partial(_llama_server, ctx, exe, kind) for kind in LLAMA_TYPES]
    servers: list[Server] = []
    try:
        for start in starters:
            servers.append(_started(start))
        _measure(ctx, servers, starters)
    finally:
        for server in servers:
            server.stop()
    bench = available("llama-bench", ctx.build_tools)
    if bench is not None:
        tg = llama_bench(bench, ctx.model, ctx.threads, n_gen=ctx.budget.tg_tokens,
                         flash_attn=ctx.flash_attn == "on")
        ctx.results.add(Measure(PART, f"tg{ctx.budget.tg_tokens}", "llama-bench", "tok/s", [tg]))


def _shape(ctx: Context) -> tuple[tuple[int, ...], int]:
    """(levels, max_tokens per stream): a --quick run checks the part's workings, not its speed."""
    return (QUICK_LEVELS, QUICK_TOKENS) if ctx.budget.quick else (LEVELS, MAX_TOKENS)


def _started(start: Callable[[], Server]) -> Server:
    server = start()
    server.wait_ready()
    server.warm_up("chat")
    return server


def _llama_server(ctx: Context, exe: Path, kind: str) -> Server:
    port = free_port()
    name = f"llama-server {kind}"
    cmd = [str(exe), "-m", str(ctx.model), "--host", "127.0.0.1", "--port", str(port), "-np", str(ctx.slots),
           "-c", str(ctx.ctx_size), "-b", str(max(ctx.n_batch, LLAMA_SERVER_BATCH)), "-ub", str(ctx.n_batch),
           "-t", str(ctx.threads), "-a", MODEL_NAME, "--no-webui", "-fa", ctx.flash_attn, "--spec-type", kind]
    proc, log, spawned = _spawn(name.replace(" ", "-"), cmd, ctx.out)
    return Server(Target(name, f"http://127.0.0.1:{port}/v1", MODEL_NAME), proc, log, spawned,
                  f"http://127.0.0.1:{port}/health")


def _measure(ctx: Context, servers: list[Server], starters: list[Callable[[], Server]]) -> None:
    deadline = ctx.deadline()
    only = [w for w in os.environ.get("BENCH_SPEC_WORKLOADS", "").split(",") if w]  # e.g. "free-writing"
    levels, max_tokens = _shape(ctx)
    for workload, prompt in workloads().items():
        if only and workload not in only:
            continue
        for n in levels:
            _revive(ctx, servers, starters, f"{workload}@{n}")
            runs = paired([functools.partial(_wave, s, prompt, n, max_tokens) for s in servers],
                          ctx.budget.reps, deadline, ctx.settle, rotate=True)
            _record(ctx, workload, n, servers, runs)


def _revive(ctx: Context, servers: list[Server], starters: list[Callable[[], Server]], name: str) -> None:
    """A server that exited (llama-server aborts where its batch cannot hold a step's drafts) is
    started afresh, so one failure costs one level, not the rest of the run."""
    for i, server in enumerate(servers):
        if server.proc is None or server.proc.poll() is None:
            continue
        server.stop()
        try:
            servers[i] = _started(starters[i])
        except (RuntimeError, TimeoutError, httpx.HTTPError) as exc:
            ctx.results.note(PART, f"{server.name} could not be started again before {name}: {exc}")
            continue
        ctx.results.note(PART, f"{server.name} had exited (code {server.proc.returncode}); started again "
                               f"before {name}")


def _record(ctx: Context, workload: str, n: int, servers: list[Server],
            runs: list[list[tuple[float, float | None]]]) -> None:
    params = {"workload": workload, "streams": n, "slots": ctx.slots, "ctx_size": ctx.ctx_size,
              "max_tokens": _shape(ctx)[1], "threads": ctx.threads}
    got: dict[str, Measure] = {}
    for server, results in zip(servers, runs, strict=True):
        rates = [rate for rate, _ in results if not math.isnan(rate)]
        if len(rates) < len(results):  # recorded as failed; the others' figures stand
            failed = len(results) - len(rates)
            ctx.results.note(PART, f"{server.name} failed at {workload}@{n} in {failed} of {len(results)} "
                                   "repetitions (its log says why)")
        if not rates:
            continue
        accepted = [a for _, a in results if a is not None]
        extra = {"acceptance": round(sum(accepted) / len(accepted), 3)} if accepted else {}
        got[server.name] = ctx.results.add(Measure(PART, f"{workload}@{n}", server.name, "tok/s", rates,
                                                   {**params, **extra}))
    name = f"{workload}@{n}"
    if MR_AUTO in got and MR_OFF in got:
        target = {"code-edit": ">= 1.5", "free-writing": ">= 0.95"}.get(workload, "")
        if n == 8:
            target = ">= 0.97" if workload == "free-writing" else target
        ctx.results.add_ratio(ratio(PART, f"auto / off {name}", got[MR_AUTO], got[MR_OFF], target))
    llama = [got[k] for k in got if k.startswith("llama-server")]
    if llama:
        best = max(llama, key=lambda m: m.value)
        for mine, label in ((MR_AUTO, "auto"), (MR_AUTO_PER_SLOT, "auto per-slot")):
            if mine in got:
                title = f"{label} / best llama-server ({best.system}) {name}"
                ctx.results.add_ratio(ratio(PART, title, got[mine], best, ">= 1.0"))


def _wave(server: Server, prompt: str, n: int, max_tokens: int) -> tuple[float, float | None]:
    """(decode tok/s summed over the n streams, mr's share of drafted tokens kept or None); a
    server that fails (llama-server's ngram-mod aborts when 8 drafts overflow its batch) gives
    nan, and the run goes on with the others."""
    if server.proc is not None and server.proc.poll() is not None:
        return math.nan, None
    before = _drafts(server)
    try:
        rates = asyncio.run(_streams(server.target, prompt, n, max_tokens))
    except (httpx.HTTPError, RuntimeError):
        return math.nan, None
    after = _drafts(server)
    kept = None
    if before is not None and after is not None and after[0] > before[0]:
        kept = (after[1] - before[1]) / (after[0] - before[0])
    return sum(rates), kept


async def _streams(target: Target, prompt: str, n: int, max_tokens: int) -> list[float]:
    limits = httpx.Limits(max_connections=n + 2)
    async with httpx.AsyncClient(timeout=TIMEOUT, limits=limits) as client:
        return list(await asyncio.gather(*(_one(client, target, prompt, max_tokens) for _ in range(n))))


async def _one(client: httpx.AsyncClient, target: Target, prompt: str, max_tokens: int) -> float:
    body: dict[str, Any] = {"model": target.model, "messages": [{"role": "user", "content": prompt}],
                            "temperature": 0, "max_tokens": max_tokens, "stream": True,
                            "stream_options": {"include_usage": True}}
    first = last = 0.0
    tokens = 0
    async with client.stream("POST", target.base_url + "/chat/completions", json=body) as response:
        if response.status_code != 200:
            raise RuntimeError(f"{target.name}: HTTP {response.status_code}")
        async for line in response.aiter_lines():
            if not line.startswith("data:") or line[5:].strip() == "[DONE]":
                continue
            chunk = json.loads(line[5:])
            if any((c.get("delta") or {}).get("content") for c in chunk.get("choices") or []):
                last = time.perf_counter()
                first = first or last
            if chunk.get("usage"):
                tokens = int(chunk["usage"].get("completion_tokens", 0))
    return (tokens - 1) / (last - first) if tokens > 1 and last > first else 0.0


def _drafts(server: Server) -> tuple[int, int] | None:
    """(drafted, kept) so far, from mr's /engines/ps; None for llama-server."""
    if not server.name.startswith("mr-serve"):
        return None
    base = server.target.base_url.removesuffix("/v1")
    models = httpx.get(base + "/engines/ps", timeout=10).json()
    return (sum(m.get("spec_drafted", 0) for m in models), sum(m.get("spec_accepted", 0) for m in models))
