"""`mr worker`, `mr run --rpc` and `mr configure --rpc` as a user runs them (real processes)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from support.workers import Worker, free_port


def _env(home: Path) -> dict[str, str]:
    env = {**os.environ, "MR_HOME": str(home), "MR_HOST": f"http://127.0.0.1:{free_port()}", "MR_DEBUG": ""}
    env.pop("MR_MODELS_DIR", None)
    return env


def _mr(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mr", *args], env=env, capture_output=True, text=True,
                          timeout=180)


def _banner(host: str, tmp_path: Path) -> str:
    """What `mr worker --host HOST` says before serving (then it is stopped)."""
    log = tmp_path / f"worker-{host}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "mr", "worker", "--host", host, "--port",
                                 str(free_port())], stdout=out, stderr=out)
    try:
        deadline = time.monotonic() + 60
        while "serving this machine's backend" not in log.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert proc.returncode == 0, log.read_text()  # SIGTERM stops it cleanly
    return log.read_text()


def test_a_worker_beyond_loopback_warns_that_the_protocol_has_no_authentication(tmp_path: Path) -> None:
    assert "WARNING" not in _banner("127.0.0.1", tmp_path)
    wide = _banner("0.0.0.0", tmp_path)
    assert "WARNING" in wide and "no authentication" in wide.lower().replace("\n", " ")


def test_mr_run_splits_the_model_with_a_worker(tiny_gguf: Path, tmp_path: Path) -> None:
    env = _env(tmp_path / "home")
    # over 64 tokens: its last token gets a step of its own with or without a worker (test_rpc.PROMPT)
    hello = "Hello there, " * 40
    question = [str(tiny_gguf), hello, "--temperature", "0", "--max-tokens", "12"]
    local = _mr(env, "run", *question)
    assert local.returncode == 0, local.stderr
    with Worker(tmp_path) as worker:
        split = _mr(env, "run", *question, "--rpc", worker.endpoint)
        clients = worker.clients()
    assert split.returncode == 0, split.stderr
    assert split.stdout == local.stdout  # the tiny model's F16 weights: the same kernels everywhere
    assert any(line.endswith(" connected") for line in clients)
    down = f"127.0.0.1:{free_port()}"
    refused = _mr(env, "run", *question, "--rpc", down)
    assert refused.returncode == 3 and down in refused.stderr and "RPC worker" in refused.stderr


def test_configure_persists_the_workers_of_a_model(tiny_gguf: Path, tmp_path: Path) -> None:
    env = _env(tmp_path / "home")
    assert _mr(env, "package", "--gguf", str(tiny_gguf), "ai/tiny").returncode == 0
    done = _mr(env, "configure", "--rpc", "10.0.0.2:50052,10.0.0.3:50052", "ai/tiny")
    assert done.returncode == 0, done.stderr
    assert "rpc=10.0.0.2:50052,10.0.0.3:50052" in done.stdout
    assert "rpc=none" in _mr(env, "configure", "--rpc", "none", "ai/tiny").stdout
    bad = _mr(env, "configure", "--rpc", "nohost", "ai/tiny")
    assert bad.returncode == 2 and "HOST:PORT" in bad.stderr


@pytest.mark.parametrize("args", [["serve", "--rpc", "nohost"], ["run", "x.gguf", "hi", "--rpc", "a:0"]])
def test_a_malformed_worker_is_a_usage_error(args: list[str], tmp_path: Path) -> None:
    result = _mr(_env(tmp_path), *args)
    assert result.returncode == 2 and "HOST:PORT" in result.stderr
