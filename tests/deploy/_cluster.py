"""A real HAProxy (Debian's package) running a deploy/haproxy.cfg in front of two real `mr serve`
replicas on loopback ports, as deploy/README.md sets them up."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from support.workers import free_port

CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "haproxy.cfg"
MODEL = "ai/tiny"
HAPROXY = shutil.which("haproxy") or ("/usr/sbin/haproxy" if os.path.exists("/usr/sbin/haproxy") else None)


def require_haproxy() -> None:
    """Skip a test without HAProxy; in CI, fail it (scripts/setup.sh installs HAProxy there)."""
    if HAPROXY is None:
        if os.environ.get("CI"):
            pytest.fail("haproxy is not installed (scripts/setup.sh installs it)")
        pytest.skip("haproxy is not installed (scripts/setup.sh installs it)")


@dataclass
class Cluster:
    url: str  # the balancer's
    replicas: dict[str, subprocess.Popen[bytes]]  # HAProxy's server name -> process
    replica_urls: dict[str, str]  # ... -> its own address (a loopback client's way in)
    homes: dict[str, Path]  # ... -> its MR_HOME (model-settings.json lands there)
    balancer: subprocess.Popen[bytes]
    logs: Path

    def kill(self, name: str) -> None:
        self.replicas[name].send_signal(signal.SIGKILL)
        self.replicas[name].wait(timeout=30)

    def stop(self) -> None:
        for proc in (self.balancer, *self.replicas.values()):
            if proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=30)


def _replica(store: Path, home: Path, port: int, log: Path, extra: Sequence[str]) -> subprocess.Popen[bytes]:
    env = {**os.environ, "MR_HOME": str(home), "MR_MODELS_DIR": str(store), "MR_DEBUG": ""}
    args = [sys.executable, "-m", "mr", "serve", "--port", str(port), "--parallel", "1",
            "--ctx-size", "4096", "--quiet", *extra]
    with log.open("ab") as out:
        return subprocess.Popen(args, env=env, stdout=out, stderr=out)


def _wait(url: str, procs: list[subprocess.Popen[bytes]], logs: Path, timeout: float = 90,
          status: int = 200) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url, timeout=2).status_code == status:
                return
        except httpx.HTTPError:
            pass
        died = [p for p in procs if p.poll() is not None]
        if died or time.monotonic() > deadline:
            text = "\n".join(f.read_text() for f in logs.glob("*.log"))
            raise RuntimeError(f"{url} did not come up:\n{text}")
        time.sleep(0.2)


def start_cluster(store: Path, base: Path, config: Path = CONFIG,
                  replica_args: Sequence[str] = ()) -> Cluster:
    """Two replicas (each started with `replica_args`) and HAProxy running `config`."""
    assert HAPROXY is not None
    ports = {"mr1": free_port(), "mr2": free_port()}
    homes = {name: base / name for name in ports}
    replicas = {name: _replica(store, homes[name], port, base / f"{name}.log", replica_args)
                for name, port in ports.items()}
    urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    for url in urls.values():
        _wait(f"{url}/health", list(replicas.values()), base)
    url, balancer = start_balancer(base, config, ports)
    cluster = Cluster(url, replicas, urls, homes, balancer, base)
    try:
        _wait(f"{cluster.url}/health", [balancer], base)
    except RuntimeError:
        cluster.stop()
        raise
    return cluster


def start_balancer(base: Path, config: Path, ports: dict[str, int]) -> tuple[str, subprocess.Popen[bytes]]:
    """HAProxy running `config` in front of replicas mr1 and mr2 at `ports`: its URL and process,
    logging to base/haproxy.log. It may not be listening yet."""
    assert HAPROXY is not None
    lb_port = free_port()
    env = {**os.environ, "MR_LB_BIND": f"127.0.0.1:{lb_port}",
           "MR_REPLICA_1": f"127.0.0.1:{ports['mr1']}", "MR_REPLICA_2": f"127.0.0.1:{ports['mr2']}"}
    with (base / "haproxy.log").open("ab") as out:
        balancer = subprocess.Popen([HAPROXY, "-db", "-f", str(config)], env=env, stdout=out, stderr=out)
    return f"http://127.0.0.1:{lb_port}", balancer


def balancer_alone(base: Path, config: Path = CONFIG) -> tuple[str, subprocess.Popen[bytes]]:
    """HAProxy running `config` with no replica up, listening: every answer is its own (a request
    its rules let by finds no server, a 503)."""
    url, balancer = start_balancer(base, config, {"mr1": free_port(), "mr2": free_port()})
    try:
        _wait(f"{url}/health", [balancer], base, timeout=30, status=503)
    except RuntimeError:
        balancer.terminate()
        balancer.wait(timeout=30)
        raise
    return url, balancer
