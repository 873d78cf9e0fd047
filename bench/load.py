"""Model load time and peak memory of mr's engine, each repetition in a fresh process.

The probe (this module run with `python -m bench.load PATH ...`) imports mr, loads the model with
the suite's slots and context, runs one request per slot together, and prints JSON: import and
load seconds, RSS after import, peak RSS (VmHWM; model pages included) and, on a GPU, VRAM.
Run the part with `python -m bench load`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from bench.core import Measure, paired

if TYPE_CHECKING:
    from bench.context import Context

PART = "load"


def _status_mib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (2**20 if sys.platform == "darwin" else 1024)


def probe(model: str, threads: int, slots: int, n_ctx: int, n_gen: int) -> dict[str, float | None]:
    start = time.perf_counter()
    from mr.engine import LLM, EngineOptions, SamplingOptions

    imported = time.perf_counter()
    rss_import = _status_mib("VmRSS")
    llm = LLM(model, EngineOptions(n_ctx=n_ctx, n_slots=slots, n_threads=threads))
    loaded = time.perf_counter()
    streams = [llm.generate(f"Tell me about number {i}.", SamplingOptions(temperature=0), max_tokens=n_gen,
                            ignore_eos=True) for i in range(slots)]
    for stream in streams:
        stream.text()
    from bench.device import gpu_memory_used_mib

    vram = gpu_memory_used_mib(os.getpid())
    llm.close()
    return {"import_s": imported - start, "load_s": loaded - imported, "rss_import_mib": rss_import,
            "peak_rss_mib": _status_mib("VmHWM"), "vram_mib": vram}


def run(ctx: Context) -> None:
    res = ctx.results
    cmd = [sys.executable, "-m", "bench.load", str(ctx.model), str(ctx.threads), str(ctx.slots),
           str(ctx.ctx_size), str(ctx.budget.gen_tokens)]
    root = Path(__file__).resolve().parents[1]

    def once() -> dict[str, float | None]:
        out = subprocess.run(cmd, cwd=root, check=True, capture_output=True, text=True, timeout=300).stdout
        return json.loads(out.strip().splitlines()[-1])

    runs = paired([once], ctx.budget.reps, ctx.deadline(), ctx.settle)[0]
    params = {"slots": ctx.slots, "ctx_size": ctx.ctx_size, "threads": ctx.threads,
              "model_mb": ctx.model.stat().st_size / 1e6}
    res.add(Measure(PART, "import mr.engine", "mr-engine", "s", [r["import_s"] or 0.0 for r in runs], params))
    res.add(Measure(PART, "model load", "mr-engine", "s", [r["load_s"] or 0.0 for r in runs], params,
                    note="LLM(path): weights (page cache warm), context and KV cache"))
    res.add(Measure(PART, "rss after import", "mr-engine", "MiB", [r["rss_import_mib"] or 0.0 for r in runs],
                    params))
    res.add(Measure(PART, "peak RSS", "mr-engine", "MiB", [r["peak_rss_mib"] or 0.0 for r in runs], params,
                    note="VmHWM after one request per slot (model pages included)"))
    vram = [r["vram_mib"] for r in runs if r["vram_mib"] is not None]
    if vram:
        res.add(Measure(PART, "VRAM", "mr-engine", "MiB", vram, params))


if __name__ == "__main__":
    model, threads, slots, n_ctx, n_gen = sys.argv[1:6]
    print(json.dumps(probe(model, int(threads), int(slots), int(n_ctx), int(n_gen))))
