"""Concurrent requests into mr's engine (no HTTP) next to `llama-batched-bench` (the kernels alone).

At each level N, N chat requests are sent at once (temperature 0, fixed max_tokens, ignore_eos);
runs are paired with llama-batched-bench at B = N (unified KV cache, same context and batch).
Figures: aggregate tok/s (prefill included), the all-decoding generation rate (comparable with
batched-bench's speed_tg), TTFT and inter-token latency p50/p99, and an estimate of mr's host
overhead per sequence per step. Run it with `python -m bench concurrency`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from bench.core import Measure, median, paired, ratio
from bench.engine_load import Driver
from bench.llama_runs import available, batched_bench
from bench.traces import Wave, wave_measures
from bench.workload import chat_messages, question

if TYPE_CHECKING:
    from bench.context import Context

PART = "concurrency"
PROMPT_ROOM = 128


def chat_prompts(driver: Driver, n: int, seed: int) -> list[str]:
    """N distinct chat prompts rendered with the model's template (as the server would)."""
    return [driver.llm.render_chat(chat_messages(question(i, seed)))[0] for i in range(n)]


def run(ctx: Context) -> None:
    from mr.engine import LLM

    b, res = ctx.budget, ctx.results
    levels = list(b.levels)
    slots = max(ctx.slots, *levels)  # every level decodes at once, as batched-bench's B sequences do
    # Room for every level's sequences at once, on both sides (batched-bench skips a B that does not
    # fit; mr's engine would end requests early): the chat prompts take well under 128 tokens.
    n_ctx = max(ctx.ctx_size, max(levels) * (b.gen_tokens + PROMPT_ROOM))
    exe = available("llama-batched-bench", ctx.build_tools)
    if exe is None:
        res.note(PART, "llama-batched-bench is not built: mr figures only")
    params = {"slots": slots, "ctx_size": n_ctx, "n_batch": ctx.n_batch, "threads": ctx.threads,
              "max_tokens": b.gen_tokens}
    deadline = ctx.deadline()
    with Driver(LLM(ctx.model, ctx.engine_options(slots=slots, n_ctx=n_ctx))) as driver:
        driver.wave(chat_prompts(driver, min(2, ctx.slots), seed=-1), 8)  # warm-up
        n_prompt = int(median([len(driver.llm.tokenize(p, parse_special=True))
                               for p in chat_prompts(driver, 4, seed=0)]))
        seeds = iter(range(1, 1_000_000))
        for n in levels:  # paired level by level, so the part's deadline can act between levels

            def engine(n: int = n) -> Wave:
                return driver.wave(chat_prompts(driver, n, next(seeds) * 1000 + n), b.gen_tokens)

            def kernels(n: int = n) -> float:
                assert exe is not None
                rows = batched_bench(exe, ctx.model, ctx.threads, n_prompt=n_prompt, n_gen=b.gen_tokens,
                                     parallel=[n], ctx_size=n_ctx, n_batch=ctx.n_batch,
                                     flash_attn=ctx.flash_attn)
                if not rows:  # it skips a B whose sequences do not fit its context
                    raise RuntimeError(f"llama-batched-bench ran no B={n} in a {n_ctx}-cell context")
                return float(rows[0]["speed_tg"])

            out = paired([kernels, engine] if exe is not None else [engine], b.reps, deadline, ctx.settle,
                         rotate=True)
            _level(ctx, n, out[-1], out[0] if exe is not None else [], {**params, "n_prompt": n_prompt})


def _level(ctx: Context, n: int, waves: list[Wave], kernels: list[float], params: dict[str, Any]) -> None:
    res = ctx.results
    figures = wave_measures(PART, n, "mr-engine", waves, params, decode=True)
    for m in figures.values():
        res.add(m)
    if not kernels:
        return
    bb = res.add(Measure(PART, f"decode@{n}", "llama-batched-bench", "tok/s", kernels,
                         {**params, "kv_unified": True}, note="speed_tg"))
    res.add_ratio(ratio(PART, f"mr-engine / batched-bench decode@{n}", figures[f"decode@{n}"], bb))
    overhead = [(1 / w.decode_rate() - 1 / k) * 1e6 for w, k in zip(waves, kernels, strict=True)]
    overhead = [v for v in overhead if math.isfinite(v)]
    res.add(Measure(PART, f"host overhead@{n}", "mr-engine", "us/token", overhead, params,
                    note="estimate: (mr step time - batched-bench step time) / sequences, pairwise"))
