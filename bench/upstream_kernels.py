"""mr's kernel patches against the pinned llama.cpp without them: llama-bench and
llama-batched-bench from both trees, side by side (A B, B A, ...), as ratios.

The rest of bench/ compares mr with tools built from mr's own patched tree, so that both sides
run the same kernels. This script answers the other question: what the patches in
KERNEL_PATCHES are worth, against the tools as upstream ships them at the pin. The fix patches
(AMX tile config, RPC) stay in both trees: without the first, the tools die on AMX machines.

    python -m bench.upstream_kernels [--reps 3] [--levels 1,4,8,16,32] [--threads 2]

The upstream tree goes to bench/upstream/ (ignored; the first build takes minutes).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bench import device
from bench.core import median, rotation
from bench.llama_runs import batched_bench, llama_bench
from bench.llama_tools import ROOT, configure, tool

KERNEL_PATCHES = ("0003-q4-1-tiles.patch", "0004-fa-skip-hidden-cells.patch")
UPSTREAM = ROOT / "bench" / "upstream"
TOOLS = ("llama-bench", "llama-batched-bench")


def upstream_tools() -> Path:
    """bench/upstream/build/bin, built from the pinned tree with every patch but KERNEL_PATCHES."""
    sys.path.insert(0, str(ROOT / "vendor"))
    import fetch  # vendor/fetch.py

    with tempfile.TemporaryDirectory() as kept:
        for patch in fetch.patch_files():
            if patch.name not in KERNEL_PATCHES:
                shutil.copy(patch, kept)
        UPSTREAM.mkdir(parents=True, exist_ok=True)
        fetch.fetch(UPSTREAM / "src", patches=Path(kept))
    build = UPSTREAM / "build"
    if not (build / "build.ninja").exists():
        subprocess.run(configure(UPSTREAM / "src", build), check=True, stdout=subprocess.DEVNULL)
    print("[bench] building upstream tools (minutes the first time)", file=sys.stderr)
    subprocess.run(["cmake", "--build", str(build), "--target", *TOOLS], check=True,
                   stdout=subprocess.DEVNULL)
    return build / "bin"


def one_run(bin_dir: Path, model: Path, threads: int, levels: list[int]) -> dict[str, float]:
    figures = {"pp512": llama_bench(bin_dir / "llama-bench", model, threads, n_prompt=512),
               "tg128": llama_bench(bin_dir / "llama-bench", model, threads, n_gen=128)}
    ctx = max(levels) * (128 + 64)
    for record in batched_bench(bin_dir / "llama-batched-bench", model, threads, n_prompt=128, n_gen=64,
                                parallel=levels, ctx_size=ctx, n_batch=512):
        figures[f"decode@{record['pl']}"] = record["speed_tg"]
    return figures


def main(argv: list[str] | None = None) -> int:
    from mr import default_model

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, default=None)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--levels", default="1,4,8,16,32")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    model = (args.model or default_model.fetch()).resolve()
    levels = [int(x) for x in args.levels.split(",")]
    ours = tool("llama-bench").parent
    for name in TOOLS[1:]:
        tool(name)
    theirs = upstream_tools()
    runs: dict[str, list[dict[str, float]]] = {"upstream": [], "mr": []}
    sides = [("upstream", theirs), ("mr", ours)]
    for rep in range(args.reps):  # A B, B A, ...: drift cancels and neither side always goes first
        for i in rotation(len(sides), rep):
            name, bin_dir = sides[i]
            runs[name].append(one_run(bin_dir, model, args.threads, levels))
    print(f"{device.cpu()['name']}, {args.threads} threads, {model.name}, "
          f"{args.reps} repetitions (tok/s, median)\n")
    print("| figure | upstream tools | mr's tree (bench/build) | ratio |\n| --- | --- | --- | --- |")
    for figure in runs["mr"][0]:
        up = median([r[figure] for r in runs["upstream"]])
        mine = median([r[figure] for r in runs["mr"]])
        print(f"| {figure} | {up:.1f} | {mine:.1f} | {mine / up:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
