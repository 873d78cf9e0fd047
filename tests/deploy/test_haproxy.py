"""deploy/haproxy.cfg as shipped, run by a real HAProxy (Debian's package) in front of two real
`mr serve` replicas on loopback ports: requests are spread, one conversation stays on one replica
(its prefix cache is hit), and killing a replica loses no request that had not started streaming."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from rpc_workers import free_port

CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "haproxy.cfg"
MODEL = "ai/tiny"
pytestmark = pytest.mark.slow
HAPROXY = shutil.which("haproxy") or ("/usr/sbin/haproxy" if os.path.exists("/usr/sbin/haproxy") else None)


@dataclass
class Cluster:
    url: str
    replicas: dict[str, subprocess.Popen[bytes]]  # HAProxy's server name -> process
    logs: Path

    def kill(self, name: str) -> None:
        self.replicas[name].send_signal(signal.SIGKILL)
        self.replicas[name].wait(timeout=30)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, tiny_gguf: Path) -> Path:
    """One store both replicas serve (as replicas pulling from one registry would hold)."""
    from mr.store import Store, package_gguf

    root = tmp_path_factory.mktemp("replica-store")
    package_gguf(Store(root), tiny_gguf, MODEL)
    return root


def _replica(store: Path, home: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "MR_HOME": str(home), "MR_MODELS_DIR": str(store), "MR_DEBUG": ""}
    args = [sys.executable, "-m", "mr", "serve", "--port", str(port), "--parallel", "1",
            "--ctx-size", "4096", "--quiet"]
    with log.open("ab") as out:
        return subprocess.Popen(args, env=env, stdout=out, stderr=out)


def _wait(url: str, procs: list[subprocess.Popen[bytes]], logs: Path, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        died = [p for p in procs if p.poll() is not None]
        if died or time.monotonic() > deadline:
            text = "\n".join(f.read_text() for f in logs.glob("*.log"))
            raise RuntimeError(f"{url} did not come up:\n{text}")
        time.sleep(0.2)


def _start(store: Path, base: Path) -> tuple[Cluster, subprocess.Popen[bytes]]:
    ports = {"mr1": free_port(), "mr2": free_port()}
    replicas = {name: _replica(store, base / name, port, base / f"{name}.log")
                for name, port in ports.items()}
    for port in ports.values():
        _wait(f"http://127.0.0.1:{port}/health", list(replicas.values()), base)
    lb_port = free_port()
    env = {**os.environ, "MR_LB_BIND": f"127.0.0.1:{lb_port}",
           "MR_REPLICA_1": f"127.0.0.1:{ports['mr1']}", "MR_REPLICA_2": f"127.0.0.1:{ports['mr2']}"}
    with (base / "haproxy.log").open("ab") as out:
        balancer = subprocess.Popen([HAPROXY, "-db", "-f", str(CONFIG)], env=env, stdout=out, stderr=out)
    cluster = Cluster(f"http://127.0.0.1:{lb_port}", replicas, base)
    _wait(f"{cluster.url}/health", [balancer], base)
    return cluster, balancer


@pytest.fixture
def cluster(store: Path, tmp_path: Path) -> Iterator[Cluster]:
    if HAPROXY is None:
        if os.environ.get("CI"):
            pytest.fail("haproxy is not installed (scripts/setup.sh installs it)")
        pytest.skip("haproxy is not installed (scripts/setup.sh installs it)")
    running, balancer = _start(store, tmp_path)
    yield running
    for proc in (balancer, *running.replicas.values()):
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=30)


def _chat(client: httpx.Client, messages: list[dict], headers: dict | None = None,
          **extra: object) -> httpx.Response:
    body = {"model": MODEL, "messages": messages, "max_tokens": 8, "temperature": 0, **extra}
    return client.post("/v1/chat/completions", json=body, headers=headers or {})


def test_requests_are_spread_and_a_conversation_stays_on_its_replica(cluster: Cluster) -> None:
    with httpx.Client(base_url=cluster.url, timeout=120) as client:
        served = {_chat(client, [{"role": "user", "content": f"hello {i}"}]).headers["x-mr-replica"]
                  for i in range(6)}
        assert served == {"mr1", "mr2"}  # no key: round robin
        for session in range(4):
            # by header, or by the OpenAI `user` field
            key = ({"headers": {"X-Session-Id": f"s{session}"}} if session % 2
                   else {"user": f"user-{session}"})
            messages = [{"role": "user", "content": f"Session {session}: " + "tell me more, " * 60}]
            replicas, previous = set(), 0
            for turn in range(3):
                response = _chat(client, messages, **key)
                assert response.status_code == 200, response.text
                replicas.add(response.headers["x-mr-replica"])
                usage = response.json()["usage"]
                if turn:  # the whole conversation so far came from that replica's cache
                    assert usage["prompt_tokens_details"]["cached_tokens"] >= previous - 1
                previous = usage["prompt_tokens"]
                reply = response.json()["choices"][0]["message"]["content"]
                messages += [{"role": "assistant", "content": reply},
                             {"role": "user", "content": f"and then {turn}?"}]
            assert len(replicas) == 1, f"session {session} moved: {replicas}"


def test_killing_a_replica_loses_no_request_that_had_not_started_streaming(cluster: Cluster) -> None:
    """A streamed request has started once mr accepted it (it sends the headers and the role
    delta at once, before a token): from then on it cannot be retried. Every other request is."""
    key = {"X-Session-Id": "doomed"}
    with httpx.Client(base_url=cluster.url, timeout=180) as client:
        victim = _chat(client, [{"role": "user", "content": "hi"}], key).headers["x-mr-replica"]
        streamed = b""
        long_answer = {"model": MODEL, "messages": [{"role": "user", "content": "go"}], "stream": True,
                       "max_tokens": 3500, "ignore_eos": True, "temperature": 0}
        with ThreadPoolExecutor(8) as pool, \
                client.stream("POST", "/v1/chat/completions", json=long_answer, headers=key) as stream:
            assert stream.headers["x-mr-replica"] == victim
            chunks = stream.iter_bytes()
            streamed += next(chunks)  # started: this one is lost with its replica
            # Queued behind it on the same replica (one slot): no byte answered yet.
            queued = [pool.submit(_chat, client, [{"role": "user", "content": f"q{i}"}], key)
                      for i in range(4)]
            time.sleep(1.0)
            cluster.kill(victim)
            # Sent right after, before the health checks notice: refused, then redispatched.
            later = [pool.submit(_chat, client, [{"role": "user", "content": f"l{i}"}], key,
                                 stream=bool(i % 2)) for i in range(4)]
            with pytest.raises(httpx.HTTPError):
                for chunk in chunks:
                    streamed += chunk
            answers = [f.result() for f in (*queued, *later)]
        assert b"[DONE]" not in streamed
        for response in answers:
            assert response.status_code == 200, response.text
            assert response.headers["x-mr-replica"] != victim
        assert all(b"[DONE]" in r.content for r in answers[5::2])  # the streams came whole
