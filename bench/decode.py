"""Single-stream decode and prefill: mr's engine next to llama.cpp's `llama-bench` (tg128, pp512).

Same model, same threads, same vendor tree; runs are paired (A B A B) so drift cancels.
Prints both medians and their ratio (target >= 0.97). Usage:

    python bench/decode.py [--model PATH] [--reps 5] [--tokens 128] [--threads N]

In the suite (`python -m bench decode`) it also measures prefill (pp512), estimates mr's per-token
host overhead and places decode under the memory-bandwidth roofline.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if not __package__:  # run as a script: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.core import Measure, median, paired, ratio
from bench.llama_runs import available, llama_bench
from bench.workload import random_tokens

if TYPE_CHECKING:
    from bench.context import Context
    from mr.engine import LLM

PART = "decode"


def mr_tg(llm: LLM, tokens: int) -> float:
    """Decode `tokens` tokens after a one-token prompt, timed from the first token: tokens/s."""
    from mr.engine import SamplingOptions

    stream = llm.generate([llm.model.bos], SamplingOptions(temperature=0), max_tokens=tokens + 1,
                          ignore_eos=True)
    next(stream)
    start = time.perf_counter()
    for _ in stream:
        pass
    elapsed = time.perf_counter() - start
    return (stream.n_generated - 1) / elapsed


def mr_pp(llm: LLM, tokens: int, seed: int) -> float:
    """Prefill a fresh `tokens`-token random prompt (no cached prefix) up to its first token: tokens/s."""
    from mr.engine import SamplingOptions

    prompt = random_tokens(tokens, llm.model.n_vocab, seed)
    start = time.perf_counter()
    stream = llm.generate(prompt, SamplingOptions(temperature=0), max_tokens=1, ignore_eos=True)
    for _ in stream:
        pass
    elapsed = time.perf_counter() - start
    if stream.n_cached:
        raise RuntimeError(f"prefill run reused {stream.n_cached} cached tokens")
    return stream.n_prompt / elapsed


def run(ctx: Context) -> None:
    """Suite part: tgN and ppN, mr engine vs llama-bench, host overhead, roofline."""
    from bench import roofline
    from mr.engine import LLM

    b, res = ctx.budget, ctx.results
    exe = available("llama-bench", ctx.build_tools)
    if exe is None:
        res.note(PART, "llama-bench is not built: mr figures only")
    params = {"threads": ctx.threads, "n_batch": ctx.n_batch, "slots": 1}
    llm = LLM(ctx.model, ctx.engine_options(slots=1, n_ctx=b.pp_tokens + b.tg_tokens + 64))
    try:
        mr_tg(llm, 16)  # warm-up both sides
        seeds = iter(range(1, 1_000_000))
        mr_pp(llm, min(64, b.pp_tokens), next(seeds))
        runs = [lambda: mr_tg(llm, b.tg_tokens), lambda: mr_pp(llm, b.pp_tokens, next(seeds))]
        if exe is not None:
            llama_bench(exe, ctx.model, ctx.threads, n_gen=16, n_batch=ctx.n_batch)
            model, threads, n_batch = ctx.model, ctx.threads, ctx.n_batch
            runs = [lambda: llama_bench(exe, model, threads, n_gen=b.tg_tokens, n_batch=n_batch), runs[0],
                    lambda: llama_bench(exe, model, threads, n_prompt=b.pp_tokens, n_batch=n_batch), runs[1]]
        out = paired(runs, b.decode_reps, ctx.deadline(), ctx.settle)
    finally:
        llm.close()
    tg, pp = f"tg{b.tg_tokens}", f"pp{b.pp_tokens}"
    if exe is None:
        mr_tg_m = res.add(Measure(PART, tg, "mr-engine", "tok/s", out[0], params))
        res.add(Measure(PART, pp, "mr-engine", "tok/s", out[1], params))
        roofline.report(ctx, mr_tg_m, None, None)
        return
    lb_tg, mr_tg_m, lb_pp, mr_pp_m = (
        res.add(Measure(PART, name, system, "tok/s", values, params))
        for name, system, values in ((tg, "llama-bench", out[0]), (tg, "mr-engine", out[1]),
                                     (pp, "llama-bench", out[2]), (pp, "mr-engine", out[3])))
    res.add_ratio(ratio(PART, f"mr-engine / llama-bench {tg}", mr_tg_m, lb_tg, ">= 0.97"))
    res.add_ratio(ratio(PART, f"mr-engine / llama-bench {pp}", mr_pp_m, lb_pp))
    overhead = [(1 / m - 1 / lb) * 1e6 for m, lb in zip(out[1], out[0], strict=True)]
    res.add(Measure(PART, "host overhead", "mr-engine", "us/token", overhead, params,
                    note="estimate: mr tg time per token minus llama-bench tg time per token (pairwise)"))
    roofline.report(ctx, mr_tg_m, lb_tg, lb_pp)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="GGUF path (default: SmolLM2)")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=0, help="0: llama.cpp's default")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()

    from bench.llama_tools import tool
    from mr import _native, default_model
    from mr.engine import LLM, EngineOptions

    model = args.model or default_model.fetch()
    threads = args.threads or _native.default_threads()  # the count llama.cpp's own tools default to
    exe = tool("llama-bench")
    llm = LLM(model, EngineOptions(n_ctx=args.tokens + 64, n_slots=1, n_threads=threads))
    mr_tg(llm, 16)  # warm-up both sides
    llama_bench(exe, model, threads, n_gen=16)
    ours, theirs = [], []
    for _ in range(args.reps):
        theirs.append(llama_bench(exe, model, threads, n_gen=args.tokens))
        ours.append(mr_tg(llm, args.tokens))
    llm.close()
    result = {
        "model": model.name, "threads": threads, "tokens": args.tokens, "reps": args.reps,
        "llama_bench_tg_tps": statistics.median(theirs), "mr_tg_tps": statistics.median(ours),
        "llama_bench_runs": theirs, "mr_runs": ours,
    }
    result["ratio"] = result["mr_tg_tps"] / result["llama_bench_tg_tps"]
    overhead = median([(1 / m - 1 / lb) * 1e6 for m, lb in zip(ours, theirs, strict=True)])
    result["host_overhead_us_per_token"] = overhead if math.isfinite(overhead) else None
    if args.json:
        print(json.dumps(result))
        return
    print(f"model {model.name}, {threads} threads, tg{args.tokens}, {args.reps} paired runs (median)")
    print(f"  llama-bench tg{args.tokens}: {result['llama_bench_tg_tps']:8.1f} tokens/s")
    print(f"  mr engine   tg{args.tokens}: {result['mr_tg_tps']:8.1f} tokens/s")
    print(f"  ratio mr / llama-bench: {result['ratio']:.3f}  (target >= 0.97)")
    print(f"  host overhead (estimate: mr minus llama-bench time per token): {overhead:.0f} us/token")


if __name__ == "__main__":
    main()
