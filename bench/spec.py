"""Speculative decoding: mr with `--spec auto` and `--spec off`, llama-server from the same tree
with each of its n-gram `--spec-type`s, and llama-bench tg128, side by side in one run.

Four workloads, each a chat request answered at temperature 0 (no ignore_eos: a draft follows
the answer the model really gives):
- code-edit: a 35-line Python file in the prompt, rewritten with one function renamed (the
  answer copies the file);
- rag-quote: passages in the prompt, an answer asked to quote them;
- json-extract: records in prose, extracted as a JSON array (keys repeat);
- free-writing: a story (little to draft: the cost of trying).
At each level N (1, 4, 8) N copies of the request go at once; the figure is decode tok/s: each
stream's tokens after its first, over the time from its first token to its last, summed over
the streams. mr's acceptance (kept / drafted, from /engines/ps) is recorded with each figure.
Run it with `python -m bench spec`.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from bench.core import Measure, paired, ratio
from bench.http_load import TIMEOUT, Target
from bench.llama_runs import available, llama_bench
from bench.servers import MODEL_NAME, Server, _spawn, free_port, package_mr, start_mr

if TYPE_CHECKING:
    from bench.context import Context

PART = "spec"
MR_AUTO, MR_OFF = "mr-serve spec auto", "mr-serve spec off"
LLAMA_TYPES = ("ngram-simple", "ngram-map-k", "ngram-mod")
LEVELS = (1, 4, 8)
MAX_TOKENS = 320
SLOT_TOKENS = 1536
ROOT = Path(__file__).resolve().parents[1]


def workloads() -> dict[str, str]:
    code = "\n".join((ROOT / "python" / "mr" / "engine" / "limits.py").read_text().splitlines()[:35])
    passages = "\n\n".join(p for p in (ROOT / "README.md").read_text().split("\n\n")[4:10])
    people = ", ".join(f"{n} is {a} and lives in {c}" for n, a, c in (
        ("Ada", 36, "London"), ("Linus", 54, "Portland"), ("Grace", 85, "Arlington"), ("Ken", 81, "Berkeley"),
        ("Barbara", 84, "Boston"), ("Dennis", 70, "Murray Hill"), ("Margaret", 88, "Cambridge"),
        ("Edsger", 72, "Austin")))
    return {
        "code-edit": "Rewrite this Python file with the function `check_text` renamed to `ensure_text`. "
                     "Output the whole file and nothing else.\n\n" + code,
        "rag-quote": "Using only these passages, answer: what does mr do with a request? Quote the "
                     "passages word for word.\n\n" + passages,
        "json-extract": "Extract every person as a JSON array of objects with the keys name, age and city: "
                        + people + ".",
        "free-writing": "Write a story about a lighthouse keeper who finds a message in a bottle.",
    }


def run(ctx: Context) -> None:
    import dataclasses
    import tempfile

    # Each of 8 slots holds a prompt of up to about 900 tokens and its answer (llama-server gives
    # each slot ctx-size / parallel).
    slots = max(ctx.slots, *LEVELS)
    ctx = dataclasses.replace(ctx, slots=slots, ctx_size=max(ctx.ctx_size, slots * SLOT_TOKENS))
    home = Path(tempfile.mkdtemp(prefix="mr-bench-spec-"))
    package_mr(ctx, home)
    servers = [start_mr(ctx, home, MR_AUTO, {"MR_SPEC": "auto"}),
               start_mr(ctx, home, MR_OFF, {"MR_SPEC": "off"})]
    exe = available("llama-server", ctx.build_tools)
    if exe is None:
        ctx.results.note(PART, "llama-server is not built: no llama.cpp speculation to compare with")
    else:
        servers += [_llama_server(ctx, exe, kind) for kind in LLAMA_TYPES]
    try:
        for server in servers:
            server.wait_ready()
            server.warm_up("chat")
        _measure(ctx, servers)
    finally:
        for server in servers:
            server.stop()
    bench = available("llama-bench", ctx.build_tools)
    if bench is not None:
        tg = llama_bench(bench, ctx.model, ctx.threads, n_gen=ctx.budget.tg_tokens,
                         flash_attn=ctx.flash_attn == "on")
        ctx.results.add(Measure(PART, f"tg{ctx.budget.tg_tokens}", "llama-bench", "tok/s", [tg]))


def _llama_server(ctx: Context, exe: Path, kind: str) -> Server:
    port = free_port()
    name = f"llama-server {kind}"
    cmd = [str(exe), "-m", str(ctx.model), "--host", "127.0.0.1", "--port", str(port), "-np", str(ctx.slots),
           "-c", str(ctx.ctx_size), "-b", str(ctx.n_batch), "-ub", str(ctx.n_batch), "-t", str(ctx.threads),
           "-a", MODEL_NAME, "--no-webui", "-fa", ctx.flash_attn, "--spec-type", kind]
    proc, log, spawned = _spawn(name.replace(" ", "-"), cmd, ctx.out)
    return Server(Target(name, f"http://127.0.0.1:{port}/v1", MODEL_NAME), proc, log, spawned,
                  f"http://127.0.0.1:{port}/health")


def _measure(ctx: Context, servers: list[Server]) -> None:
    deadline = ctx.deadline()
    only = [w for w in os.environ.get("BENCH_SPEC_WORKLOADS", "").split(",") if w]  # e.g. "free-writing"
    for workload, prompt in workloads().items():
        if only and workload not in only:
            continue
        for n in LEVELS:
            runs = paired([lambda s=s, p=prompt, n=n: _wave(s, p, n) for s in servers], ctx.budget.reps,
                          deadline, ctx.settle, rotate=True)
            _record(ctx, workload, n, servers, runs)


def _record(ctx: Context, workload: str, n: int, servers: list[Server],
            runs: list[list[tuple[float, float | None]]]) -> None:
    params = {"workload": workload, "streams": n, "slots": ctx.slots, "ctx_size": ctx.ctx_size,
              "max_tokens": MAX_TOKENS, "threads": ctx.threads}
    got: dict[str, Measure] = {}
    for server, results in zip(servers, runs, strict=True):
        rates = [rate for rate, _ in results if not math.isnan(rate)]
        if not rates:
            ctx.results.note(PART, f"{server.name} failed at {workload}@{n} (its log says why)")
            continue
        accepted = [a for _, a in results if a is not None]
        extra = {"acceptance": round(sum(accepted) / len(accepted), 3)} if accepted else {}
        got[server.name] = ctx.results.add(Measure(PART, f"{workload}@{n}", server.name, "tok/s", rates,
                                                   {**params, **extra}))
    name = f"{workload}@{n}"
    if MR_AUTO in got and MR_OFF in got:
        target = {"code-edit": ">= 1.5", "free-writing": ">= 0.95"}.get(workload, "")
        if n == 8:
            target = ">= 0.97" if workload == "free-writing" else target
        ctx.results.add_ratio(ratio(PART, f"auto / off {name}", got[MR_AUTO], got[MR_OFF], target))
    llama = [got[k] for k in got if k.startswith("llama-server")]
    if MR_AUTO in got and llama:
        best = max(llama, key=lambda m: m.value)
        ctx.results.add_ratio(ratio(PART, f"auto / best llama-server ({best.system}) {name}", got[MR_AUTO],
                                    best, ">= 1.0"))


def _wave(server: Server, prompt: str, n: int) -> tuple[float, float | None]:
    """(decode tok/s summed over the n streams, mr's share of drafted tokens kept or None); a
    server that fails (llama-server's ngram-mod aborts when 8 drafts overflow its batch) gives
    nan, and the run goes on with the others."""
    if server.proc is not None and server.proc.poll() is not None:
        return math.nan, None
    before = _drafts(server)
    try:
        rates = asyncio.run(_streams(server.target, prompt, n))
    except (httpx.HTTPError, RuntimeError):
        return math.nan, None
    after = _drafts(server)
    kept = None
    if before is not None and after is not None and after[0] > before[0]:
        kept = (after[1] - before[1]) / (after[0] - before[0])
    return sum(rates), kept


async def _streams(target: Target, prompt: str, n: int) -> list[float]:
    limits = httpx.Limits(max_connections=n + 2)
    async with httpx.AsyncClient(timeout=TIMEOUT, limits=limits) as client:
        return list(await asyncio.gather(*(_one(client, target, prompt) for _ in range(n))))


async def _one(client: httpx.AsyncClient, target: Target, prompt: str) -> float:
    body: dict[str, Any] = {"model": target.model, "messages": [{"role": "user", "content": prompt}],
                            "temperature": 0, "max_tokens": MAX_TOKENS, "stream": True,
                            "stream_options": {"include_usage": True}}
    first = last = 0.0
    tokens = 0
    async with client.stream("POST", target.base_url + "/chat/completions", json=body) as response:
        if response.status_code != 200:
            raise RuntimeError(f"{target.name}: HTTP {response.status_code}")
        async for line in response.aiter_lines():
            if not line.startswith("data:") or line[5:].strip() == "[DONE]":
                continue
            chunk = json.loads(line[5:])
            if any((c.get("delta") or {}).get("content") for c in chunk.get("choices") or []):
                last = time.perf_counter()
                first = first or last
            if chunk.get("usage"):
                tokens = int(chunk["usage"].get("completion_tokens", 0))
    return (tokens - 1) / (last - first) if tokens > 1 and last > first else 0.0


def _drafts(server: Server) -> tuple[int, int] | None:
    """(drafted, kept) so far, from mr's /engines/ps; None for llama-server."""
    if not server.name.startswith("mr-serve"):
        return None
    base = server.target.base_url.removesuffix("/v1")
    models = httpx.get(base + "/engines/ps", timeout=10).json()
    return (sum(m.get("spec_drafted", 0) for m in models), sum(m.get("spec_accepted", 0) for m in models))
