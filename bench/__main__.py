"""`python -m bench [PART ...]`: mr side by side with llama.cpp's tools, printed as ratios.

Parts: decode (with the roofline), concurrency, determinism, http, ceiling, prefix, embeddings,
load, pull, scale (RPC workers and replicas behind HAProxy), spec (speculative decoding), vision
(images in: TTFT cold and cached, images/s, the stall); none named = all.
Results go to bench/results/<timestamp>/: results.jsonl, summary.md, *.png, server logs.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shlex
import signal
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from bench import device, plots, report
from bench.context import FULL, QUICK, Context
from bench.results import Results

ROOT = Path(__file__).resolve().parents[1]


def _parts() -> dict[str, Callable[[Context], None]]:
    from bench import (
        ceiling,
        concurrency,
        decode,
        determinism,
        embeddings,
        load,
        prefix,
        pull,
        scale,
        serving,
        spec,
        vision,
    )

    return {"decode": decode.run, "concurrency": concurrency.run, "determinism": determinism.run,
            "http": serving.run,
            "ceiling": ceiling.run, "prefix": prefix.run, "embeddings": embeddings.run, "load": load.run,
            "pull": pull.run, "scale": scale.run, "spec": spec.run, "vision": vision.run}


PART_NAMES = ("decode", "concurrency", "determinism", "http", "ceiling", "prefix", "embeddings", "load",
              "pull", "scale", "spec", "vision")


def _levels(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(",") if x.strip())


def _url(text: str) -> tuple[str, str]:
    name, sep, url = text.partition("=")
    if not sep or not url.startswith("http"):
        raise argparse.ArgumentTypeError("expected NAME=http://host:port/v1")
    return name, url


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=(__doc__ or "").splitlines()[0])
    p.add_argument("parts", nargs="*", metavar="PART",
                   help=f"parts to run ({', '.join(PART_NAMES)}); default: all")
    p.add_argument("--model", type=Path, help="GGUF path (default: SmolLM2-135M-Instruct Q4_1)")
    p.add_argument("--quick", action="store_true", help="tiny budgets (CI smoke run)")
    p.add_argument("--threads", type=int, default=0, help="0: llama.cpp's default count")
    p.add_argument("--slots", type=int, default=8, help="parallel slots (mr --parallel, llama-server -np)")
    p.add_argument("--ctx-size", type=int, default=4096, help="context shared by the slots")
    p.add_argument("--batch", type=int, default=512, help="n_batch = n_ubatch (mr serve uses 512)")
    p.add_argument("--levels", type=_levels, help="concurrent requests, e.g. 1,4,8,16,32,64")
    p.add_argument("--reps", type=int, help="paired repetitions per figure")
    p.add_argument("--gen-tokens", type=int, help="tokens per concurrent request")
    p.add_argument("--part-seconds", type=float, help="no new repetition after this many seconds in a part")
    p.add_argument("--endpoint", choices=["chat", "completions"], default="chat")
    p.add_argument("--flash-attn", choices=["on", "off", "auto"], default="on",
                   help="flash attention for mr and llama.cpp's tools alike (auto: each one's default)")
    p.add_argument("--spec", choices=["auto", "ngram", "off"], default="auto",
                   help="mr's speculative decoding, in the engine and mr serve (off: the kernels alone)")
    p.add_argument("--url", type=_url, action="append", default=[], metavar="NAME=URL",
                   help="another OpenAI-compatible server to compare (its /v1 URL; BENCH_API_KEY for a key)")
    p.add_argument("--url-model", default="", help="model name to send to the --url servers")
    p.add_argument("--no-http", action="store_true", help="skip everything that starts servers")
    p.add_argument("--no-build", action="store_true",
                   help="never build a missing llama.cpp tool (its comparison is skipped and noted)")
    p.add_argument("--quiet-wait", type=float, default=0.0, metavar="SECONDS",
                   help="before each repetition wait up to this long for other processes to go quiet")
    p.add_argument("--out", type=Path, help="results folder (default: bench/results/<timestamp>)")
    args = p.parse_args(argv)
    unknown = [name for name in args.parts if name not in PART_NAMES]
    if unknown:
        p.error(f"unknown part(s) {', '.join(unknown)}; choose from {', '.join(PART_NAMES)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind: the servers it started are stopped
    from mr import _native, default_model

    budget = QUICK if args.quick else FULL
    overrides = {"levels": args.levels, "reps": args.reps, "gen_tokens": args.gen_tokens,
                 "part_seconds": args.part_seconds}
    budget = dataclasses.replace(budget, **{k: v for k, v in overrides.items() if v is not None})
    model = (args.model or default_model.fetch()).resolve()
    threads = args.threads or _native.default_threads()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = args.out or ROOT / "bench" / "results" / stamp
    dev = device.detect()
    settings = {"threads": threads, "slots": args.slots, "ctx_size": args.ctx_size, "n_batch": args.batch,
                "quick": args.quick, "endpoint": args.endpoint, "flash_attn": args.flash_attn,
                "spec": args.spec}
    model_info = {"path": str(model), "name": model.name, "file_mb": round(model.stat().st_size / 1e6, 1)}
    results = Results(out, {"device": dev, "model": model_info, "settings": settings})
    ctx = Context(model=model, threads=threads, slots=args.slots, ctx_size=args.ctx_size, n_batch=args.batch,
                  budget=budget, results=results, endpoint=args.endpoint, urls=args.url,
                  url_model=args.url_model, http=not args.no_http, build_tools=not args.no_build,
                  quiet_wait=args.quiet_wait, flash_attn=args.flash_attn, spec=args.spec)
    names = [n for n in PART_NAMES if n in (args.parts or PART_NAMES)]
    if args.no_http:
        names = [n for n in names if n not in ("http", "ceiling")]
    print(f"[bench] {device.describe(dev)}\n[bench] model {model.name}, {threads} threads, parts: "
          f"{' '.join(names)}; results in {out}", file=sys.stderr)
    failed = _run_parts(ctx, names)
    command = "python -m bench " + shlex.join(argv if argv is not None else sys.argv[1:])
    header = {"title": f"{stamp} ({'quick' if args.quick else 'full'})", "command": command.strip(),
              "device": device.describe(dev), "model": f"{model.name} ({model_info['file_mb']} MB), "
              f"{threads} threads, {args.slots} slots, ctx {args.ctx_size}, batch {args.batch}",
              "build": f"mr {dev['build']['mr_version']} ({dev['build']['mr_commit']}), llama.cpp "
              f"{dev['build']['llama_commit'][:12]}, {dev['build']['system_info']}"}
    summary = report.markdown(results, header)
    pngs = plots.write(results.measures, out, f"{model.name} on {device.describe(dev)}")
    summary += "".join(f"\n![{p.stem}]({p.name})\n" for p in pngs)
    (out / "summary.md").write_text(summary + "\n")
    print(summary)
    print(f"[bench] wrote {out / 'results.jsonl'}, {out / 'summary.md'}"
          + "".join(f", {p.name}" for p in pngs), file=sys.stderr)
    return 1 if failed else 0


def _run_parts(ctx: Context, names: list[str]) -> list[str]:
    parts, failed = _parts(), []
    try:
        for name in names:
            start = time.monotonic()
            print(f"[bench] {name} ...", file=sys.stderr, flush=True)
            ctx.busy.clear()
            try:
                parts[name](ctx)
            except Exception as exc:  # one broken part must not hide the others' figures
                traceback.print_exc()
                ctx.results.note(name, f"FAILED: {type(exc).__name__}: {exc}")
                failed.append(name)
            _load_note(ctx, name)
            print(f"[bench] {name} took {time.monotonic() - start:.0f} s", file=sys.stderr, flush=True)
    finally:
        if ctx.servers is not None:
            ctx.servers.close()
    return failed


def _load_note(ctx: Context, name: str) -> None:
    """How busy other processes kept the machine while this part ran: read the figures with it."""
    if ctx.busy:
        busy = statistics.median(ctx.busy)
        ctx.results.note(name, f"other processes kept {busy:.2f} cores busy before its repetitions "
                               f"(max {max(ctx.busy):.2f}; {os.cpu_count()} cores)")


if __name__ == "__main__":
    sys.exit(main())
