"""Single-stream decode speed: mr's engine next to llama.cpp's `llama-bench tg128`.

Same model, same threads, same vendor tree; runs are paired (A B A B) so drift cancels.
Prints both medians and their ratio (target >= 0.97). Usage:

    python bench/decode.py [--model PATH] [--reps 5] [--tokens 128] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from llama_tools import tool


def llama_bench_tg(exe: Path, model: Path, tokens: int, threads: int) -> float:
    """One llama-bench tg run: tokens/s."""
    cmd = [str(exe), "-m", str(model), "-p", "0", "-n", str(tokens), "-r", "1", "-t", str(threads),
           "-o", "json"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return float(json.loads(out)[0]["avg_ts"])


def mr_tg(llm, tokens: int) -> float:
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="GGUF path (default: SmolLM2)")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=0, help="0: llama.cpp's default")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()

    from mr import default_model
    from mr.engine import LLM, EngineOptions

    model = args.model or default_model.fetch()
    threads = args.threads or _default_threads()
    exe = tool("llama-bench")
    llm = LLM(model, EngineOptions(n_ctx=args.tokens + 64, n_slots=1, n_threads=threads))
    mr_tg(llm, 16)  # warm-up both sides
    llama_bench_tg(exe, model, 16, threads)
    ours, theirs = [], []
    for _ in range(args.reps):
        theirs.append(llama_bench_tg(exe, model, args.tokens, threads))
        ours.append(mr_tg(llm, args.tokens))
    llm.close()
    result = {
        "model": model.name, "threads": threads, "tokens": args.tokens, "reps": args.reps,
        "llama_bench_tg_tps": statistics.median(theirs), "mr_tg_tps": statistics.median(ours),
        "llama_bench_runs": theirs, "mr_runs": ours,
    }
    result["ratio"] = result["mr_tg_tps"] / result["llama_bench_tg_tps"]
    if args.json:
        print(json.dumps(result))
        return
    print(f"model {model.name}, {threads} threads, tg{args.tokens}, {args.reps} paired runs (median)")
    print(f"  llama-bench tg{args.tokens}: {result['llama_bench_tg_tps']:8.1f} tokens/s")
    print(f"  mr engine   tg{args.tokens}: {result['mr_tg_tps']:8.1f} tokens/s")
    print(f"  ratio mr / llama-bench: {result['ratio']:.3f}  (target >= 0.97)")


def _default_threads() -> int:
    from mr import _native

    return _native.default_threads()  # the count llama.cpp's own tools default to


if __name__ == "__main__":
    main()
