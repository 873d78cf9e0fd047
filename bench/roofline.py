"""The physical limits of single-stream decode: memory bandwidth over bytes of weights per token.

A decode step reads every weight once, so tokens/s <= bandwidth / weight bytes. The bandwidth is a
host memcpy (numpy, one slice per thread) counted as bytes read + bytes written. On a small CPU
decode is compute-bound first: llama-bench's batched prefill rate (ppN) stands in for that ceiling.
"""

from __future__ import annotations

import itertools
import threading
import time
from typing import TYPE_CHECKING

import numpy as np

from bench.core import Measure, Ratio

if TYPE_CHECKING:
    from bench.context import Context

PART = "roofline"


def copy_bandwidth(mib: int, threads: int, reps: int = 5) -> list[float]:
    """Host copy bandwidth (read + write), bytes/s, one figure per repetition."""
    n = mib * 2**20
    src = np.ones(n, dtype=np.uint8)
    dst = np.empty_like(src)
    bounds = np.linspace(0, n, threads + 1, dtype=np.int64)

    def copy(lo: int, hi: int) -> None:
        np.copyto(dst[lo:hi], src[lo:hi])  # releases the GIL

    copy(0, n)  # fault the pages in
    figures = []
    for _ in range(reps):
        workers = [threading.Thread(target=copy, args=(int(lo), int(hi)))
                   for lo, hi in itertools.pairwise(bounds)]
        start = time.perf_counter()
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        figures.append(2 * n / (time.perf_counter() - start))
    return figures


def weight_bytes(ctx: Context) -> int:
    """Bytes of weights read per token: the model's tensor data (llama.cpp's model size)."""
    from mr import _native

    return _native.Model(str(ctx.model)).size_bytes


def report(ctx: Context, mr_tg: Measure, lb_tg: Measure | None, lb_pp: Measure | None) -> None:
    res = ctx.results
    weights = weight_bytes(ctx)
    reps = 3 if ctx.budget.reps == 1 else 5
    bw = res.add(Measure(PART, "host copy bandwidth", "host", "GB/s",
                         [b / 1e9 for b in copy_bandwidth(ctx.budget.memcpy_mib, ctx.threads, reps)],
                         {"buffer_mib": ctx.budget.memcpy_mib, "threads": ctx.threads},
                         note="numpy copy, bytes read + written per second"))
    res.add(Measure(PART, "weights per token", "model", "MB", [weights / 1e6]))
    per_token = [r * 1e9 / weights for r in bw.runs]
    ceiling = res.add(Measure(PART, "bandwidth ceiling", "host", "tok/s", per_token,
                              note="host copy bandwidth / weight bytes"))
    res.add_ratio(Ratio(PART, "mr-engine tg / bandwidth ceiling", mr_tg.value / ceiling.value))
    if lb_tg is not None:
        res.add_ratio(Ratio(PART, "llama-bench tg / bandwidth ceiling", lb_tg.value / ceiling.value))
    if lb_pp is not None:
        res.add_ratio(Ratio(PART, "mr-engine tg / llama-bench pp (compute proxy)", mr_tg.value / lb_pp.value))
