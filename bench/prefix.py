"""Prefix cache: time to first token when a long shared prefix (1,000 tokens) is already cached,
against the same length cold. The prefix is a chat's system message; cold runs use one never seen
before, cached runs reuse one primed prefix with a different question each time, and the two
alternate (A B A B), so a cold request must not evict the cached prefix (they share only the
template's first tokens).

Measured in mr's engine (the chat prompt rendered as the server would), and over HTTP on mr serve
and llama-server when the servers run. Target: cached / cold <= 0.25. Run it with
`python -m bench prefix`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from bench import http_load
from bench.core import Measure, paired, ratio
from bench.engine_load import Driver
from bench.servers import LLAMA, LLAMA_KVU
from bench.traces import Trace
from bench.workload import chat_messages, question, words

if TYPE_CHECKING:
    from bench.context import Context
    from mr import _native

PART = "prefix"


def _measure(ctx: Context, system: str, first_token: Callable[[str, str], Trace],
             model: _native.Model) -> None:
    """Pair cold and cached TTFTs through `first_token(prefix, question)`."""
    b, res = ctx.budget, ctx.results
    shared = words(b.prefix_tokens, model, seed=1)
    first_token(shared, question(0, seed=7))  # prime the cache
    seeds = iter(range(2, 1_000_000))
    cached_counts: list[int] = []

    def cold() -> float:
        seed = next(seeds)
        return first_token(words(b.prefix_tokens, model, seed=seed), question(seed, seed=7)).ttft * 1e3

    def cached() -> float:
        trace = first_token(shared, question(next(seeds), seed=7))
        cached_counts.append(trace.cached_tokens)
        return trace.ttft * 1e3

    out = paired([cold, cached], b.reps, ctx.deadline(), ctx.settle)
    params = {"prefix_tokens": b.prefix_tokens, "threads": ctx.threads,
              "cached_tokens": [min(cached_counts), max(cached_counts)]}
    cold_m = res.add(Measure(PART, "ttft cold", system, "ms", out[0], params))
    cached_m = res.add(Measure(PART, "ttft cached", system, "ms", out[1], params))
    res.add_ratio(ratio(PART, f"{system} ttft cached / cold", cached_m, cold_m, "<= 0.25"))
    if min(cached_counts) < b.prefix_tokens // 2:
        res.note(PART, f"{system} reported only {min(cached_counts)} cached tokens "
                       f"of a {b.prefix_tokens}-token prefix")


def run(ctx: Context) -> None:
    from mr.engine import LLM

    res = ctx.results
    with Driver(LLM(ctx.model, ctx.engine_options())) as driver:
        driver.ttft("warm up")

        def engine(prefix: str, user: str) -> Trace:  # the prompt the server would build
            return driver.ttft(driver.llm.render_chat(chat_messages(user, system=prefix))[0])

        _measure(ctx, "mr-engine", engine, driver.llm.model)
        model = driver.llm.model  # its vocabulary outlives the engine
    if not ctx.http:
        return
    pool = ctx.pool()
    for name in [s.name for s in pool.start()]:
        use = name
        if name == LLAMA and ctx.budget.prefix_tokens + 100 > ctx.ctx_size // ctx.slots:
            res.note(PART, f"the prefix does not fit llama-server's {ctx.ctx_size // ctx.slots}-token slots: "
                           "measured on llama-server -kvu (one cache shared by the slots, as in mr)")
            use = LLAMA_KVU
        server = pool.fresh(use)  # every server starts this part with empty caches
        if server is not None:
            _measure(ctx, server.name, _over_http(ctx, server.target), model)
    pool.stop(LLAMA_KVU)
    _compare(ctx)


def _over_http(ctx: Context, target: http_load.Target) -> Callable[[str, str], Trace]:
    def first_token(prefix: str, user: str) -> Trace:
        return http_load.ttft(target, ctx.endpoint, user, system=prefix)

    return first_token


def _compare(ctx: Context) -> None:
    res = ctx.results
    for llama in (LLAMA, LLAMA_KVU):
        for figure in ("ttft cached", "ttft cold"):
            mr, other = res.find(PART, figure, "mr-serve"), res.find(PART, figure, llama)
            if mr is not None and other is not None:
                res.add_ratio(ratio(PART, f"mr-serve / {llama} {figure}", mr, other))
