"""The servers under test as subprocesses: `mr serve` and `llama-server` with the same slots,
context, batch and threads; plus any OpenAI-compatible URL given on the command line."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING

import httpx

from bench import http_load
from bench.http_load import Target
from bench.llama_runs import available

if TYPE_CHECKING:
    from bench.context import Context

MODEL_NAME = "ai/mr-bench"
MR, LLAMA, LLAMA_KVU = "mr-serve", "llama-server", "llama-server-kvu"
MR_PER_SLOT = "mr-serve (per-slot kv)"  # MR_PER_SLOT_KV=1: llama-server's own KV layout
READY_TIMEOUT = 120.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """A running server process (or, with no process, a URL someone else runs)."""

    def __init__(self, target: Target, proc: subprocess.Popen[bytes] | None = None,
                 log: IO[bytes] | None = None, spawned: float = 0.0, probe: str = "") -> None:
        self.target = target
        self.probe = probe  # a URL answering 200 once the server is ready
        self.proc = proc
        self.log = log
        self.spawned = spawned
        self.cold_start = float("nan")  # spawn -> first token of the first request, seconds

    @property
    def name(self) -> str:
        return self.target.name

    def wait_ready(self) -> None:
        if not self.probe:
            return
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                code = self.proc.returncode
                raise RuntimeError(f"{self.name} exited with {code} (log: {self._log_path()})")
            try:
                if httpx.get(self.probe, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"{self.name} not ready after {READY_TIMEOUT:.0f} s")

    def warm_up(self, endpoint: str) -> None:
        """The first request (it loads the model on mr); its end marks the cold start."""
        http_load.wave(self.target, endpoint, ["Say hello."], 4)
        if self.proc is not None:
            self.cold_start = time.perf_counter() - self.spawned

    def cpu_seconds(self, main_thread_only: bool = False) -> float:
        """CPU time of the process (its live threads), or of its main thread: the event loop on mr.

        Read from /proc/PID/task/TID/schedstat (nanoseconds); NaN where that cannot be read."""
        if self.proc is None:
            return float("nan")
        pid = self.proc.pid
        try:
            tasks = [Path(f"/proc/{pid}/task/{pid}")]
            if not main_thread_only:
                tasks = list(Path(f"/proc/{pid}/task").iterdir())
        except OSError:
            return float("nan")
        total = 0
        for task in tasks:
            try:
                total += int((task / "schedstat").read_text().split()[0])
            except (OSError, ValueError, IndexError):
                if task.name == str(pid):
                    return float("nan")
        return total / 1e9

    def cpu_split(self) -> tuple[float, float]:
        """(user, system) CPU seconds of the main thread, in the kernel's 10 ms ticks."""
        if self.proc is None:
            return float("nan"), float("nan")
        pid = self.proc.pid
        try:
            fields = Path(f"/proc/{pid}/task/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return float("nan"), float("nan")
        return int(fields[11]) / CLOCK_TICKS, int(fields[12]) / CLOCK_TICKS

    def peak_rss_mib(self) -> float:
        if self.proc is None:
            return float("nan")
        try:
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        except OSError:
            pass
        return float("nan")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        if self.log is not None:
            self.log.close()

    def _log_path(self) -> str:
        return getattr(self.log, "name", "")


def _spawn(name: str, cmd: list[str], log_dir: Path, env: dict[str, str] | None = None
           ) -> tuple[subprocess.Popen[bytes], IO[bytes], float]:
    log = (log_dir / f"{name}.log").open("ab")  # a restarted server appends
    spawned = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, stdin=subprocess.DEVNULL)
    return proc, log, spawned


def mr_serve_command(switches: dict[str, object] | None = None) -> list[str]:
    """`python -m mr serve` once the verb is registered; until then the command object itself.
    `switches`: Settings fields no flag sets (the experiment switches: direct_streams,
    engine_writes, loop), given through mr.cli.serve.serve_with."""
    from mr.cli import COMMANDS

    if switches:
        code = ("import json, sys; from mr.cli.serve import serve_with; "
                "serve_with(sys.argv[2:], **json.loads(sys.argv[1]))")
        return [sys.executable, "-c", code, json.dumps(switches)]
    if "serve" in COMMANDS:
        return [sys.executable, "-m", "mr", "serve"]
    code = "import sys; from mr.cli.serve import serve; serve(sys.argv[1:], 'mr serve')"
    return [sys.executable, "-c", code]


def _mr_env(home: Path) -> dict[str, str]:
    env = {**os.environ, "MR_HOME": str(home)}
    env.pop("MR_MODELS_DIR", None)
    return env


def package_mr(ctx: Context, home: Path) -> None:
    """mr serves models from its store: the model goes into a private MR_HOME first."""
    subprocess.run([sys.executable, "-m", "mr", "package", "--gguf", str(ctx.model), MODEL_NAME],
                   env=_mr_env(home), check=True, capture_output=True, timeout=300)


def start_mr(ctx: Context, home: Path, name: str = MR, env: dict[str, str] | None = None,
             switches: dict[str, object] | None = None) -> Server:
    """mr serve; for a variant named `name`, `env` overrides its MR_* variables (e.g. MR_SPEC) and
    `switches` the settings without one (mr_serve_command)."""
    port = free_port()
    cmd = [*mr_serve_command(switches), "--port", str(port), "--parallel", str(ctx.slots), "--ctx-size",
           str(ctx.ctx_size), "--threads", str(ctx.threads), "--keep-alive", "-1", "--quiet",
           "--flash-attn", ctx.flash_attn]
    proc, log, spawned = _spawn(name, cmd, ctx.out, {**_mr_env(home), "MR_SPEC": ctx.spec, **(env or {})})
    return Server(Target(name, f"http://127.0.0.1:{port}/v1", MODEL_NAME), proc, log, spawned,
                  f"http://127.0.0.1:{port}/v1/models")


def start_llama_server(ctx: Context, exe: Path, unified: bool = False) -> Server:
    """llama-server as people run it: -np slots, each with ctx/slots of context. With `unified`
    (-kvu), one cache shared by the slots, as in mr's engine: any slot may use the whole context."""
    port = free_port()
    name = LLAMA_KVU if unified else LLAMA
    cmd = [str(exe), "-m", str(ctx.model), "--host", "127.0.0.1", "--port", str(port), "-np", str(ctx.slots),
           "-c", str(ctx.ctx_size), "-b", str(ctx.n_batch), "-ub", str(ctx.n_batch), "-t", str(ctx.threads),
           "-a", MODEL_NAME, "--no-webui", "-fa", ctx.flash_attn, *(["-kvu"] if unified else [])]
    proc, log, spawned = _spawn(name, cmd, ctx.out)
    return Server(Target(name, f"http://127.0.0.1:{port}/v1", MODEL_NAME), proc, log, spawned,
                  f"http://127.0.0.1:{port}/health")


class ServerPool:
    """llama-server, mr serve, then any --url targets; each warmed up once; stopped by close()."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.servers: list[Server] = []
        self._home = Path(tempfile.mkdtemp(prefix="mr-bench-home-"))
        self._starters: dict[str, Callable[[], Server]] = {}
        self.started = False

    def start(self) -> list[Server]:
        if self.started:
            return self.servers
        self.started = True
        ctx = self.ctx
        exe = available("llama-server", ctx.build_tools)
        if exe is None:
            ctx.results.note("http", "llama-server is not built: no C++ server to compare with")
        else:
            self._starters[LLAMA] = lambda: start_llama_server(ctx, exe)
            self._starters[LLAMA_KVU] = lambda: start_llama_server(ctx, exe, unified=True)
        package_mr(ctx, self._home)
        self._starters[MR] = lambda: start_mr(ctx, self._home)
        key = os.environ.get("BENCH_API_KEY")
        for name, url in ctx.urls:
            target = Target(name, url.rstrip("/"), ctx.url_model or MODEL_NAME, key)
            self._starters[name] = lambda target=target: Server(target)
        for name in (LLAMA, MR, *(name for name, _ in ctx.urls)):
            if name in self._starters:
                self._add(self._starters[name])
        return self.servers

    def fresh(self, name: str) -> Server | None:
        """A newly started `name` (LLAMA_KVU included), its caches empty; a --url server as it is."""
        self.start()
        server = self.get(name)
        if server is not None and server.proc is None:
            return server
        self.stop(name)
        if name in self._starters:
            self._add(self._starters[name])
        return self.get(name)

    def _add(self, start: Callable[[], Server]) -> None:
        server = None
        try:
            server = start()
            server.wait_ready()
            server.warm_up(self.ctx.endpoint)
        except Exception as exc:  # a server that cannot start is reported, the others still run
            self.ctx.results.note("http", f"server failed to start: {exc}")
            if server is not None:
                server.stop()
            return
        self.servers.append(server)

    def add_variant(self, name: str, env: dict[str, str] | None = None,
                    switches: dict[str, object] | None = None) -> Server | None:
        """Another mr serve on the same model and settings but `env` and `switches` (start_mr),
        after start()."""
        self._starters[name] = lambda: start_mr(self.ctx, self._home, name, env, switches)
        self._add(self._starters[name])
        return self.get(name)

    def get(self, name: str) -> Server | None:
        return next((s for s in self.servers if s.name == name), None)

    def stop(self, name: str) -> None:
        server = self.get(name)
        if server is not None:
            server.stop()
            self.servers.remove(server)

    def close(self) -> None:
        for server in self.servers:
            server.stop()
        self.servers.clear()
        shutil.rmtree(self._home, ignore_errors=True)
