"""What the deterministic mode costs: mr's engine with it on and off, side by side in one run.

Two engines of the same model, same slots, context and threads: the default one, and one with
EngineOptions(deterministic=True) (per-slot KV streams, flash attention, plain weights, ggml's
reference kernels). At each level N, N chat requests go at once to one, then the other (the order
rotates each repetition); the figure is aggregate tok/s (prefill included). pp512 is one prompt's
prefill rate. The ratio on / off is what the mode costs (PERFORMANCE.md: >= 0.90 at 8 clients).
Run it with `python -m bench determinism`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec

from bench.concurrency import PROMPT_ROOM, chat_prompts
from bench.core import Measure, paired, ratio
from bench.decode import mr_pp
from bench.engine_load import Driver

if TYPE_CHECKING:
    from bench.context import Context

PART = "determinism"
SYSTEMS = ("mr-engine", "mr-engine deterministic")


def run(ctx: Context) -> None:
    from mr.engine import LLM

    b = ctx.budget
    slots = max(ctx.slots, *b.levels)
    # per-slot streams: each slot needs room for its own prompt and answer
    n_ctx = max(ctx.ctx_size, slots * (b.gen_tokens + PROMPT_ROOM), slots * (b.pp_tokens + 64))
    options = ctx.engine_options(slots=slots, n_ctx=n_ctx)
    params = {"slots": slots, "ctx_size": n_ctx, "n_batch": ctx.n_batch, "threads": ctx.threads,
              "max_tokens": b.gen_tokens}
    deadline = ctx.deadline()
    with Driver(LLM(ctx.model, options)) as off, \
            Driver(LLM(ctx.model, msgspec.structs.replace(options, deterministic=True))) as on:
        drivers = (off, on)
        for d in drivers:
            d.wave(chat_prompts(d, 2, seed=-1), 8)  # warm-up
        seeds = iter(range(1, 1_000_000))
        pp = paired([lambda d=d: mr_pp(d.llm, b.pp_tokens, next(seeds)) for d in drivers], b.reps, deadline,
                    ctx.settle, rotate=True)
        _compare(ctx, f"pp{b.pp_tokens}", pp, {**params, "prompt_tokens": b.pp_tokens})
        for n in b.levels:
            def wave(d: Driver, n: int = n) -> float:
                return d.wave(chat_prompts(d, n, next(seeds) * 1000 + n), b.gen_tokens).aggregate

            out = paired([lambda d=d: wave(d) for d in drivers], b.reps, deadline, ctx.settle, rotate=True)
            _compare(ctx, f"aggregate@{n}", out, {**params, "clients": n},
                     target=">= 0.90" if n == 8 else "")


def _compare(ctx: Context, name: str, runs: list[list[float]], params: dict[str, object],
             target: str = "") -> None:
    res = ctx.results
    off, on = (res.add(Measure(PART, name, system, "tok/s", r, params))
               for system, r in zip(SYSTEMS, runs, strict=True))
    res.add_ratio(ratio(PART, f"deterministic / default {name}", on, off, target))
