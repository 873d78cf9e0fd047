"""Streaming HTTP at 1..N concurrent clients: `mr serve` vs `llama-server` (same slots, context,
batch, threads) and any --url, all driven by the same client (bench/http_load.py), A B A B.
mr serve runs twice: with its default KV cache shared by the slots, and with one per slot
(`MR_PER_SLOT_KV=1`), the layout llama-server uses when given -np.

Figures per server and level: aggregate tok/s, TTFT and inter-token latency p50/p99, CPU per
streamed token (whole process) and, on mr, the CPU of its event-loop thread per token (the Python
server overhead: engine events to bytes on the socket); then cold start and peak RSS.
Run it with `python -m bench http`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING

from bench import http_load
from bench.core import Measure, Ratio, paired, ratio, rotation
from bench.device import gpu_memory_used_mib
from bench.servers import LLAMA, MR, MR_PER_SLOT, Server
from bench.traces import Wave, wave_measures
from bench.workload import question

if TYPE_CHECKING:
    from bench.context import Context

PART = "http"


def _wave(ctx: Context, server: Server, n: int, seed: int) -> tuple[Wave, float, float]:
    """One wave, with the server's CPU per completion token: (wave, process us/token, main us/token)."""
    users = [question(i, seed) for i in range(n)]
    total0, main0 = server.cpu_seconds(), server.cpu_seconds(main_thread_only=True)
    wave = http_load.wave(server.target, ctx.endpoint, users, ctx.budget.gen_tokens)
    total1, main1 = server.cpu_seconds(), server.cpu_seconds(main_thread_only=True)
    return wave, (total1 - total0) / wave.tokens * 1e6, (main1 - main0) / wave.tokens * 1e6


def run(ctx: Context) -> None:
    b, res = ctx.budget, ctx.results
    servers = ctx.pool().start()
    if not servers:
        res.note(PART, "no server could be started")
        return
    if ctx.pool().get(MR) is not None:
        ctx.pool().add_variant(MR_PER_SLOT, {"MR_PER_SLOT_KV": "1"})
    params = {"slots": ctx.slots, "ctx_size": ctx.ctx_size, "threads": ctx.threads, "endpoint": ctx.endpoint,
              "max_tokens": b.gen_tokens}
    deadline = ctx.deadline()
    for n in b.levels:
        waves: dict[str, list[Wave]] = {s.name: [] for s in servers}
        cpu: dict[str, list[tuple[float, float]]] = {s.name: [] for s in servers}
        for rep in range(b.reps):
            if rep and deadline.passed:
                break
            ctx.settle()
            for i in rotation(len(servers), rep):  # every server once per repetition, same prompts;
                server = servers[i]                 # each repetition starts with the next one
                wave, total, main = _wave(ctx, server, n, seed=rep * 1000 + n)
                waves[server.name].append(wave)
                cpu[server.name].append((total, main))
        _level(ctx, n, servers, waves, cpu, params)
    mr = next((s for s in servers if s.name == MR and s.proc is not None), None)
    if mr is not None:
        _marginal(ctx, mr, params)
    _footprint(ctx, servers)


def _marginal(ctx: Context, server: Server, params: dict[str, object]) -> None:
    """mr's event-loop CPU per extra streamed token: a long and a one-token request, paired, so the
    per-request work (HTTP parsing, chat template, tokenizing) cancels out. Also split into user
    time (Python and the C it calls) and system time (mostly the kernel's loopback socket sends),
    pooled over the repetitions because /proc counts those in 10 ms ticks."""
    long_tokens = 32 if ctx.budget.quick else 256

    def cost(max_tokens: int, seed: int) -> tuple[float, float, float, int]:
        before = server.cpu_seconds(main_thread_only=True), server.cpu_split()
        wave = http_load.wave(server.target, ctx.endpoint, [question(0, seed)], max_tokens)
        after = server.cpu_seconds(main_thread_only=True), server.cpu_split()
        return (after[0] - before[0], after[1][0] - before[1][0], after[1][1] - before[1][1], wave.tokens)

    seeds = iter(range(50_000, 1_000_000))
    out = paired([lambda: cost(1, next(seeds)), lambda: cost(long_tokens, next(seeds))],
                 max(5, ctx.budget.reps), ctx.deadline(), ctx.settle)
    pairs = [(short, long) for short, long in zip(*out, strict=True) if long[3] > short[3]]
    per_token = [(lg[0] - sh[0]) / (lg[3] - sh[3]) * 1e6 for sh, lg in pairs]
    extra = sum(lg[3] - sh[3] for sh, lg in pairs) or 1
    setup = {**params, "max_tokens": long_tokens, "clients": 1}
    res = ctx.results
    total = res.add(Measure(PART, "event-loop cpu per extra token", MR, "us/token", _finite(per_token), setup,
                            note="server overhead: CPU of mr's event-loop thread (user + system, from "
                                 "schedstat's nanoseconds), (long request - 1-token request) / extra "
                                 "tokens, pairwise"))
    res.add(Measure(PART, "event-loop user cpu per extra token", MR, "us/token",
                           _finite([sum(lg[1] - sh[1] for sh, lg in pairs) / extra * 1e6]), setup,
                           note="the same, user time only (Python and the C it calls), pooled"))
    res.add(Measure(PART, "event-loop system cpu per extra token", MR, "us/token",
                    _finite([sum(lg[2] - sh[2] for sh, lg in pairs) / extra * 1e6]), setup,
                    note="the same, system time only (the kernel's socket sends), pooled"))
    # The target is user + system: the schedstat figure. The tick-based split is too coarse to
    # judge by once little is left (a few 10 ms ticks over the whole run, charged to whichever
    # thread the tick interrupts).
    res.add_ratio(Ratio(PART, "mr-serve event-loop CPU per extra token (us)", total.value, "<= 30"))


def _level(ctx: Context, n: int, servers: list[Server], waves: dict[str, list[Wave]],
           cpu: dict[str, list[tuple[float, float]]], params: dict[str, object]) -> None:
    res = ctx.results
    figures = {s.name: wave_measures(PART, n, s.name, waves[s.name], params) for s in servers}
    for s in servers:
        for m in figures[s.name].values():
            res.add(m)
        if s.proc is not None:
            per_token = _finite(c[0] for c in cpu[s.name])
            res.add(Measure(PART, f"cpu per token@{n}", s.name, "us/token", per_token, params,
                            note="CPU time of the whole server process per completion token"))
    if MR in figures:
        res.add(Measure(PART, f"event-loop cpu@{n}", MR, "us/token", _finite(c[1] for c in cpu[MR]), params,
                        note="CPU of mr's event-loop thread per completion token, per-request work included"))
        engine = res.find("concurrency", f"aggregate@{n}", "mr-engine")
        if engine is not None:
            slots = engine.params.get("slots")
            label = "" if slots == ctx.slots else f" (engine {slots} slots, server {ctx.slots})"
            agg = figures[MR][f"aggregate@{n}"]
            res.add_ratio(ratio(PART, f"mr-serve / mr-engine aggregate@{n}{label}", agg, engine))
        kernels = res.find("concurrency", f"decode@{n}", "llama-batched-bench")
        if kernels is not None:
            target = ">= 0.95" if n == 8 else ""
            res.add_ratio(ratio(PART, f"mr-serve aggregate / batched-bench decode@{n}",
                                figures[MR][f"aggregate@{n}"], kernels, target))
        for other in (s.name for s in servers if s.name not in (MR, MR_PER_SLOT)):
            _versus(ctx, n, figures, MR, other)
            if MR_PER_SLOT in figures:
                _versus(ctx, n, figures, MR_PER_SLOT, other)


def _versus(ctx: Context, n: int, figures: dict[str, dict[str, Measure]], mr: str, name: str) -> None:
    res, yardstick = ctx.results, name == LLAMA
    ours, other = figures[mr], figures[name]
    agg = f"aggregate@{n}"
    res.add_ratio(ratio(PART, f"{mr} / {name} {agg}", ours[agg], other[agg], ">= 1.05" if yardstick else ""))
    for q in ("p50", "p99"):
        ttft = f"ttft {q}@{n}"
        res.add_ratio(ratio(PART, f"{mr} / {name} {ttft}", ours[ttft], other[ttft],
                            "<= 1.00" if yardstick and n in (8, 16) else ""))
    res.add_ratio(ratio(PART, f"{mr} / {name} itl p50@{n}", ours[f"itl p50@{n}"], other[f"itl p50@{n}"]))


def _footprint(ctx: Context, servers: list[Server]) -> None:
    res = ctx.results
    local = {s.name: s for s in servers if s.proc is not None}
    got: dict[str, tuple[Measure, Measure]] = {}
    for s in local.values():
        cold = res.add(Measure(PART, "cold start", s.name, "s", _finite([s.cold_start]),
                               note="process spawn to the end of the first request (model load included)"))
        rss = res.add(Measure(PART, "peak RSS", s.name, "MiB", _finite([s.peak_rss_mib()]),
                              note="VmHWM after every HTTP run (model pages included)"))
        got[s.name] = (cold, rss)
        vram = gpu_memory_used_mib(s.proc.pid) if s.proc is not None else None  # None without a GPU
        if vram is not None:
            res.add(Measure(PART, "VRAM", s.name, "MiB", [vram], note="nvidia-smi, after every HTTP run"))
    if MR in got and LLAMA in got:
        res.add_ratio(ratio(PART, "mr-serve / llama-server cold start", got[MR][0], got[LLAMA][0]))
        res.add_ratio(ratio(PART, "mr-serve / llama-server peak RSS", got[MR][1], got[LLAMA][1]))


def _finite(values: Iterable[float]) -> list[float]:
    return [float(v) for v in values if math.isfinite(v)]
