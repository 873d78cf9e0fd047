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
    """The tool's path; built first when `build` (minutes on a fresh tree), else None if absent."""
    exe = BUILD / "bin" / name
    if exe.exists():
        return exe
    if not build:
        return None
    try:
        return tool(name)
    except (OSError, subprocess.CalledProcessError):
        return None


def llama_bench(exe: Path, model: Path, threads: int, *, n_prompt: int = 0, n_gen: int = 0,
                n_batch: int = 512) -> float:
    """One llama-bench test (ppN when n_prompt, tgN when n_gen): tokens/s."""
    cmd = [str(exe), "-m", str(model), "-p", str(n_prompt), "-n", str(n_gen), "-r", "1", "-t", str(threads),
           "-b", str(n_batch), "-ub", str(n_batch), "-o", "json"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=TIMEOUT).stdout
    return float(json.loads(out)[0]["avg_ts"])


def batched_bench(exe: Path, model: Path, threads: int, *, n_prompt: int, n_gen: int, parallel: list[int],
                  ctx_size: int, n_batch: int) -> list[dict[str, Any]]:
    """llama-batched-bench: one record per B in `parallel` (speed_tg is generation tokens/s), with
    a unified KV cache like mr's engine."""
    cmd = [str(exe), "-m", str(model), "-c", str(ctx_size), "-b", str(n_batch), "-ub", str(n_batch),
           "-npp", str(n_prompt), "-ntg", str(n_gen), "-npl", ",".join(map(str, parallel)),
           "-t", str(threads), "-kvu", "--output-format", "jsonl"]
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
