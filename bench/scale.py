"""Past one machine, measured on one: a model split over RPC workers, and replicas behind HAProxy.

- rpc: single-stream decode of the model on this process alone, and split across this process
  and two `mr worker` processes on loopback ports (llama.cpp's RPC backend, the layers spread by
  memory: about a third each). Once with one thread per process and no repacking (workers compute
  with ggml's plain CPU kernels; no process waits for a core): the RPC cost per step alone; once
  as mr runs by default (the suite's threads in each process, repacking on).
- replicas: aggregate tokens/s of N streaming requests against one `mr serve`, against the same
  server behind HAProxy (deploy/haproxy.cfg: the balancer's own cost), and against two replicas
  behind it, each with half the threads (the same cores in all).

On one machine neither can scale: the workers and the replicas share its cores. The figures say
what the RPC hops and the balancer cost; docs/architecture.md has the arithmetic for real hosts.
Run it with `python -m bench scale`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from bench import http_load
from bench.core import Measure, paired, ratio
from bench.decode import mr_tg
from bench.http_load import Target
from bench.servers import MODEL_NAME, _spawn, free_port, mr_serve_command, package_mr
from bench.workload import question

if TYPE_CHECKING:
    from bench.context import Context
    from mr.engine import LLM

PART = "scale"
HAPROXY_CFG = Path(__file__).resolve().parents[1] / "deploy" / "haproxy.cfg"
READY = 120.0


def run(ctx: Context) -> None:
    rpc_split(ctx)
    if ctx.http:
        replicas(ctx)


# ---- a model over RPC workers ----

def _worker(ctx: Context, stack: ExitStack, name: str, threads: int) -> str:
    """An `mr worker` on a free loopback port, stopped with the stack; its endpoint."""
    port = free_port()
    cmd = [sys.executable, "-m", "mr", "worker", "--port", str(port), "--threads", str(threads)]
    proc, log, _ = _spawn(name, cmd, ctx.out)
    stack.callback(_stop, proc, log)
    _wait(lambda: "serving this machine" in (ctx.out / f"{name}.log").read_text() and _listening(port),
          proc, name)
    return f"127.0.0.1:{port}"


def _listening(port: int) -> bool:
    hex_port = f":{port:04X}"
    lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    return any(line.split()[1].endswith(hex_port) and line.split()[3] == "0A" for line in lines)


def rpc_split(ctx: Context) -> None:
    """Twice: one thread in every process, no repacking (the same arithmetic and no process
    waiting for a core: the RPC cost alone), then as mr runs by default (every process with the
    suite's threads, repacking on): three processes then share this machine's cores."""
    b, res = ctx.budget, ctx.results
    for threads, repack, label in ((1, False, "1 thread each, no repack"),
                                   (ctx.threads, True, f"{ctx.threads} threads each")):
        with ExitStack() as stack:
            workers = tuple(_worker(ctx, stack, f"rpc-worker-{i}-t{threads}", threads) for i in (1, 2))
            # the models are gone (their connections closed) before the workers stop
            measured = _measure_split(ctx, workers, threads, repack)
        local, split = (res.add(Measure(PART, f"tg{b.tg_tokens} {name} ({label})", "mr-engine", "tok/s",
                                        values, params)) for name, (values, params) in measured.items())
        res.add_ratio(ratio(PART, f"split 1+2 / local tg ({label})", split, local))
        per_step = [(1 / sp - 1 / lo) * 1e3 for sp, lo in zip(split.runs, local.runs, strict=True)]
        res.add(Measure(PART, f"rpc cost per step ({label})", "mr-engine", "ms", per_step,
                        {"workers": 2, "threads": threads, "repack": repack},
                        note="split minus local time per decode step, pairwise"))


def _measure_split(ctx: Context, workers: tuple[str, ...], threads: int,
                   repack: bool) -> dict[str, tuple[list[float], dict]]:
    """tgN of the model in this process alone and split with the workers, A B A B."""
    import msgspec

    from mr.engine import LLM

    b = ctx.budget
    systems: dict[str, LLM] = {}
    try:
        for name, rpc in (("local", ()), ("split 1+2", workers)):
            options = ctx.engine_options(slots=1, n_ctx=b.tg_tokens + 64, repack=repack)
            options = msgspec.structs.replace(options, rpc=rpc, n_threads=threads)
            systems[name] = LLM(ctx.model, options)
            mr_tg(systems[name], 8)  # warm-up
        runs = [lambda llm=llm: mr_tg(llm, b.tg_tokens) for llm in systems.values()]
        out = paired(runs, b.decode_reps, ctx.deadline(), ctx.settle)
        return {name: (values, _split_params(llm, threads)) for (name, llm), values
                in zip(systems.items(), out, strict=True)}
    finally:
        for llm in systems.values():
            llm.close()


def _split_params(llm: LLM, threads: int) -> dict[str, object]:
    placement = [f"{p.device}@{p.host or 'local'}:{p.layers}{'+out' if p.output else ''}"
                 for p in llm.placement]
    return {"threads": threads, "worker_threads": threads, "repack": llm.repacked, "placement": placement}


# ---- replicas behind HAProxy ----

def replicas(ctx: Context) -> None:
    b, res = ctx.budget, ctx.results
    haproxy = shutil.which("haproxy") or next((p for p in ("/usr/sbin/haproxy",) if os.path.exists(p)), None)
    if haproxy is None:
        res.note(PART, "haproxy is not installed (scripts/setup.sh installs it): no replica figures")
        return
    home = Path(tempfile.mkdtemp(prefix="mr-bench-scale-"))
    package_mr(ctx, home)
    half = max(1, ctx.threads // 2)
    n = max(b.levels)
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, home, True)
        single = _serve(ctx, stack, home, "scale-single", ctx.threads)
        one_lb = _balancer(ctx, stack, haproxy, "haproxy-one", single, single)
        two_lb = _balancer(ctx, stack, haproxy, "haproxy-two", _serve(ctx, stack, home, "scale-r1", half),
                           _serve(ctx, stack, home, "scale-r2", half))
        targets = {"one server": single, "one server behind haproxy": one_lb,
                   "two replicas behind haproxy": two_lb}
        for url in targets.values():
            http_load.wave(_target(url), ctx.endpoint, ["Say hello."] * 2, 4)  # loads the model
        seeds = iter(range(1, 1_000_000))
        runs = [lambda url=url: _aggregate(ctx, url, n, next(seeds)) for url in targets.values()]
        out = paired(runs, b.reps, ctx.deadline(), ctx.settle)
    figures = {}
    for name, values in zip(targets, out, strict=True):
        params = {"concurrent": n, "max_tokens": b.gen_tokens, "slots": ctx.slots,
                  "threads": half if "two" in name else ctx.threads}
        figures[name] = res.add(Measure(PART, f"aggregate@{n} {name}", "mr-serve", "tok/s", values, params))
    res.add_ratio(ratio(PART, f"two replicas via haproxy / one server aggregate@{n}",
                        figures["two replicas behind haproxy"], figures["one server"]))
    res.add_ratio(ratio(PART, f"one server via haproxy / direct aggregate@{n}",
                        figures["one server behind haproxy"], figures["one server"]))


def _target(url: str) -> Target:
    return Target(PART, f"{url}/v1", MODEL_NAME)


def _aggregate(ctx: Context, url: str, n: int, seed: int) -> float:
    wave = http_load.wave(_target(url), ctx.endpoint, [question(i, seed) for i in range(n)],
                          ctx.budget.gen_tokens)
    return wave.tokens / wave.wall


def _serve(ctx: Context, stack: ExitStack, home: Path, name: str, threads: int) -> str:
    port = free_port()
    cmd = [*mr_serve_command(), "--port", str(port), "--parallel", str(ctx.slots), "--ctx-size",
           str(ctx.ctx_size), "--threads", str(threads), "--keep-alive", "-1", "--quiet"]
    env = {**os.environ, "MR_HOME": str(home)}
    env.pop("MR_MODELS_DIR", None)
    proc, log, _ = _spawn(name, cmd, ctx.out, env)
    stack.callback(_stop, proc, log)
    url = f"http://127.0.0.1:{port}"
    _wait(lambda: _healthy(url), proc, name)
    return url


def _balancer(ctx: Context, stack: ExitStack, haproxy: str, name: str, first: str, second: str) -> str:
    """deploy/haproxy.cfg as shipped, its addresses from the environment."""
    port = free_port()
    env = {**os.environ, "MR_LB_BIND": f"127.0.0.1:{port}",
           "MR_REPLICA_1": first.removeprefix("http://"), "MR_REPLICA_2": second.removeprefix("http://")}
    proc, log, _ = _spawn(name, [haproxy, "-db", "-f", str(HAPROXY_CFG)], ctx.out, env)
    stack.callback(_stop, proc, log)
    url = f"http://127.0.0.1:{port}"
    _wait(lambda: _healthy(url), proc, name)
    return url


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _wait(ready: Callable[[], bool], proc: subprocess.Popen[bytes], name: str) -> None:
    deadline = time.monotonic() + READY
    while not ready():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{name} did not start (exit {proc.poll()}); see its log")
        time.sleep(0.1)


def _stop(proc: subprocess.Popen[bytes], log: object) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
    close = getattr(log, "close", None)
    if close is not None:
        close()
