"""One run of each llama.cpp yardstick tool, parsed into numbers."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

from bench.llama_tools import BUILD, tool

TIMEOUT = 300  # seconds for any one tool run


def available(name: str, build: bool = True) -> Path | None:
    """The tool's path, built or brought up to date first when `build` (minutes on a fresh tree);
    without `build`, the tool as it is, or None if absent."""
    exe = BUILD / "bin" / name
    if not build:
        return exe if exe.exists() else None
    try:
        return tool(name)
    except (OSError, subprocess.CalledProcessError):
        return None


def llama_bench(exe: Path, model: Path, threads: int, *, n_prompt: int = 0, n_gen: int = 0,
                n_batch: int = 512, flash_attn: bool | None = None, repack: bool = True) -> float:
    """One llama-bench test (ppN when n_prompt, tgN when n_gen): tokens/s. flash_attn None is
    llama-bench's own default (auto); pass mr's resolved choice to compare like with like."""
    return llama_bench_runs(exe, model, threads, n_prompt=n_prompt, n_gen=n_gen, n_batch=n_batch,
                            flash_attn=flash_attn, repack=repack)[0]["avg_ts"]


def llama_bench_runs(exe: Path, model: Path, threads: int, *, n_prompt: int = 0, n_gen: int = 0,
                     n_batch: int = 512, flash_attn: bool | None = None, repack: bool = True,
                     depths: tuple[int, ...] = (0,), fa_both: bool = False) -> list[dict[str, Any]]:
    """llama-bench's JSON records, one per (depth, flash attention) combination."""
    fa = "0,1" if fa_both else ("auto" if flash_attn is None else str(int(flash_attn)))
    cmd = [str(exe), "-m", str(model), "-p", str(n_prompt), "-n", str(n_gen), "-r", "1", "-t", str(threads),
           "-b", str(n_batch), "-ub", str(n_batch), "-fa", fa, "--repack", str(int(repack)),
           "-d", ",".join(map(str, depths)), "-o", "json"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=TIMEOUT).stdout
    return json.loads(out)


def batched_bench(exe: Path, model: Path, threads: int, *, n_prompt: int, n_gen: int, parallel: list[int],
                  ctx_size: int, n_batch: int, flash_attn: str = "auto") -> list[dict[str, Any]]:
    """llama-batched-bench: one record per B in `parallel` (speed_tg is generation tokens/s), with
    a unified KV cache like mr's engine."""
    cmd = [str(exe), "-m", str(model), "-c", str(ctx_size), "-b", str(n_batch), "-ub", str(n_batch),
           "-npp", str(n_prompt), "-ntg", str(n_gen), "-npl", ",".join(map(str, parallel)),
           "-t", str(threads), "-kvu", "-fa", flash_attn, "--output-format", "jsonl"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=TIMEOUT).stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def embedding_seconds(exe: Path, model: Path, threads: int, texts: list[str], ctx_size: int) -> float:
    """Wall time of `llama-embedding` over `texts` (one per line), mean pooling, normalised.

    The tool loads the model each time; the caller subtracts a one-input run for that."""
    cmd = [str(exe), "-m", str(model), "-t", str(threads), "-c", str(ctx_size), "-b", str(ctx_size),
           "-ub", str(ctx_size), "--pooling", "mean", "--embd-normalize", "2", "--embd-output-format", "json",
           "-p", "\n".join(texts)]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, timeout=TIMEOUT)
    return time.perf_counter() - start
