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
from typing import TYPE_CHECKING, NamedTuple

if not __package__:  # run as a script: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.core import Measure, median, paired, ratio
from bench.llama_runs import available, llama_bench, llama_bench_runs
from bench.workload import random_tokens

if TYPE_CHECKING:
    from bench.context import Context
    from mr.engine import LLM

PART = "decode"


STEP_PARTS = ("batch", "decode", "sample", "publish", "other")


def mr_tg(llm: LLM, tokens: int, steps: list[dict[str, float]] | None = None) -> float:
    """Decode `tokens` tokens after a one-token prompt, timed from the first token: tokens/s.

    With `steps`, the engine's own per-step time split (us_* counters) is appended to it."""
    from mr.engine import SamplingOptions

    stream = llm.generate([llm.model.bos], SamplingOptions(temperature=0), max_tokens=tokens + 1,
                          ignore_eos=True)
    next(stream)
    before = llm.stats()
    start = time.perf_counter()
    for _ in stream:
        pass
    elapsed = time.perf_counter() - start
    after = llm.stats()
    n = stream.n_generated - 1
    if steps is not None and after["steps"] > before["steps"]:
        n_steps = after["steps"] - before["steps"]
        split = {part: (after[f"us_{part}"] - before[f"us_{part}"]) / n_steps for part in STEP_PARTS}
        split["wall"] = elapsed * 1e6 / n
        steps.append(split)
    return n / elapsed


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


class Variant(NamedTuple):
    """One way of loading the weights: repacked (AMX tiles, interleaved blocks) or as in the GGUF."""

    label: str  # "" for the default; appended to figure names otherwise
    repack: bool


def variants() -> list[Variant]:
    from bench import device

    # On an AMX machine the default repacks into AMX tiles; "AMX off" keeps the GGUF layout. With
    # a GPU backend the weights are offloaded and repacking does not apply: no second variant.
    amx_off = device.has_amx() and not device.build_info()["gpu_backends"]
    return [Variant("", True), *([Variant(" (AMX off)", False)] if amx_off else [])]


def run(ctx: Context) -> None:
    """Suite part: tgN and ppN, mr engine vs llama-bench (same flash attention, same repacking),
    per-step breakdown, AMX on/off where there is AMX, flash attention by depth, roofline."""
    exe = available("llama-bench", ctx.build_tools)
    if exe is None:
        ctx.results.note(PART, "llama-bench is not built: mr figures only")
    tg_figures: dict[str, Measure] = {}
    for variant in variants():
        tg_figures[variant.label] = run_variant(ctx, exe, variant)
    if "" in tg_figures and " (AMX off)" in tg_figures:
        ctx.results.add_ratio(ratio(PART, f"mr-engine tg{ctx.budget.tg_tokens} AMX on / off",
                                    tg_figures[""], tg_figures[" (AMX off)"]))
    if exe is not None:
        flash_attention_by_depth(ctx, exe)


def run_variant(ctx: Context, exe: Path | None, variant: Variant) -> Measure:
    from bench import roofline
    from mr.engine import LLM

    b, res = ctx.budget, ctx.results
    options = ctx.engine_options(slots=1, n_ctx=b.pp_tokens + b.tg_tokens + 64, repack=variant.repack)
    llm = LLM(ctx.model, options)
    params = {"threads": ctx.threads, "n_batch": ctx.n_batch, "slots": 1, "repack": llm.repacked,
              "weight_buffers": llm.model.weight_buffers, "flash_attn": llm.flash_attn}
    steps: list[dict[str, float]] = []
    try:
        mr_tg(llm, 16)  # warm-up both sides
        seeds = iter(range(1, 1_000_000))
        mr_pp(llm, min(64, b.pp_tokens), next(seeds))
        runs = [lambda: mr_tg(llm, b.tg_tokens, steps), lambda: mr_pp(llm, b.pp_tokens, next(seeds))]
        if exe is not None:
            # llama-bench runs with mr's resolved flash attention and the same repacking
            same = {"threads": ctx.threads, "n_batch": ctx.n_batch, "flash_attn": llm.flash_attn,
                    "repack": variant.repack}
            llama_bench(exe, ctx.model, n_gen=16, **same)
            model = ctx.model
            runs = [lambda: llama_bench(exe, model, n_gen=b.tg_tokens, **same), runs[0],
                    lambda: llama_bench(exe, model, n_prompt=b.pp_tokens, **same), runs[1]]
        out = paired(runs, b.decode_reps, ctx.deadline(), ctx.settle, rotate=True)
    finally:
        llm.close()
    tg, pp = f"tg{b.tg_tokens}{variant.label}", f"pp{b.pp_tokens}{variant.label}"
    if exe is None:
        mr_tg_m = res.add(Measure(PART, tg, "mr-engine", "tok/s", out[0], params))
        res.add(Measure(PART, pp, "mr-engine", "tok/s", out[1], params))
        if not variant.label:
            step_breakdown(ctx, steps, None, params)
            roofline.report(ctx, mr_tg_m, None, None)
        return mr_tg_m
    lb_params = {**params, "weight_buffers": None, "threading": "OpenMP (llama.cpp's default build)"}
    lb_tg = res.add(Measure(PART, tg, "llama-bench", "tok/s", out[0], lb_params))
    mr_tg_m = res.add(Measure(PART, tg, "mr-engine", "tok/s", out[1], params))
    lb_pp = res.add(Measure(PART, pp, "llama-bench", "tok/s", out[2], lb_params))
    mr_pp_m = res.add(Measure(PART, pp, "mr-engine", "tok/s", out[3], params))
    res.add_ratio(ratio(PART, f"mr-engine / llama-bench {tg}", mr_tg_m, lb_tg, ">= 0.97"))
    res.add_ratio(ratio(PART, f"mr-engine / llama-bench {pp}", mr_pp_m, lb_pp))
    if not variant.label:
        overhead = [(1 / m - 1 / lb) * 1e6 for m, lb in zip(out[1], out[0], strict=True)]
        res.add(Measure(PART, "host overhead", "mr-engine", "us/token", overhead, params,
                        note="estimate: mr tg time per token minus llama-bench tg time per token (pairwise)"))
        step_breakdown(ctx, steps, out[0], params)
        roofline.report(ctx, mr_tg_m, lb_tg, lb_pp)
    return mr_tg_m


def step_breakdown(ctx: Context, steps: list[dict[str, float]], lb_tg: list[float] | None,
                   params: dict[str, object]) -> None:
    """Where one decode step's time goes inside mr's engine thread (its own clocks), next to
    llama-bench's whole time per token: `decode` is llama_decode, the rest is mr's host work."""
    if not steps:
        return
    for part in (*STEP_PARTS, "wall"):
        name = "step wall per token" if part == "wall" else f"step {part}"
        ctx.results.add(Measure(PART, name, "mr-engine", "us/token", [s[part] for s in steps], params,
                                note="engine thread clocks per decode step, one-token steps (tgN)"))
    if lb_tg:
        ctx.results.add(Measure(PART, "step wall per token", "llama-bench", "us/token",
                                [1e6 / tps for tps in lb_tg], params, note="1 / tgN"))


def flash_attention_by_depth(ctx: Context, exe: Path) -> None:
    """Decode speed with flash attention on and off as the context fills (llama-bench -d): the
    measurement behind mr's flash-attention choice for CPU-resident weights."""
    depths = (0, 512, 2048) if ctx.budget.tg_tokens >= 64 else (0, 64)
    n_gen = 32 if ctx.budget.tg_tokens >= 64 else 8
    ctx.settle()
    records = llama_bench_runs(exe, ctx.model, ctx.threads, n_gen=n_gen, n_batch=ctx.n_batch,
                               depths=depths, fa_both=True)
    by = {(int(r["n_depth"]), bool(r["flash_attn"])): float(r["avg_ts"]) for r in records}
    for depth in depths:
        on = ctx.results.add(Measure(PART, f"tg{n_gen}@d{depth} flash attention on", "llama-bench", "tok/s",
                                     [by[(depth, True)]], {"depth": depth, "flash_attn": True}))
        off = ctx.results.add(Measure(PART, f"tg{n_gen}@d{depth} flash attention off", "llama-bench", "tok/s",
                                      [by[(depth, False)]], {"depth": depth, "flash_attn": False}))
        ctx.results.add_ratio(ratio(PART, f"flash attention on / off tg{n_gen}@d{depth}", on, off))


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
    llama_bench(exe, model, threads, n_gen=16, flash_attn=llm.flash_attn)
    ours, theirs = [], []
    for _ in range(args.reps):
        theirs.append(llama_bench(exe, model, threads, n_gen=args.tokens, flash_attn=llm.flash_attn))
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
