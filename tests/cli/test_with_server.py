"""The CLI against a running `mr serve`: run, ps, status, list, df, unload, logs, error classes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

QUESTION = "How fast does a cheetah run?"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, smollm2_path: Path) -> Iterator[dict[str, str]]:
    home = tmp_path_factory.mktemp("home")
    port = _free_port()
    environ = {**os.environ, "MR_HOME": str(home), "MR_HOST": f"http://127.0.0.1:{port}", "MR_DEBUG": ""}
    environ.pop("MR_MODELS_DIR", None)
    subprocess.run([sys.executable, "-m", "mr", "package", "--gguf", str(smollm2_path), "ai/smollm2"],
                   env=environ, check=True, capture_output=True)
    server = subprocess.Popen([sys.executable, "-m", "mr", "serve", "--port", str(port), "--parallel", "2",
                               "--ctx-size", "2048"], env=environ, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/version", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert server.poll() is None and time.time() < deadline, "mr serve did not start"
        time.sleep(0.2)
    yield environ
    server.terminate()
    server.wait(timeout=30)


def mr(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mr", *args], env=env, capture_output=True, text=True,
                          timeout=180)


def test_run_through_server_equals_in_process(env: dict[str, str]) -> None:
    remote = mr(env, "run", "ai/smollm2", QUESTION, "--temperature", "0", "--max-tokens", "40")
    local = mr(env, "run", "ai/smollm2", QUESTION, "--temperature", "0", "--max-tokens", "40", "--local")
    assert remote.returncode == 0 and local.returncode == 0, remote.stderr + local.stderr
    assert "cheetah" in remote.stdout.lower()
    assert remote.stdout == local.stdout


def test_ps_status_list_df_unload_logs(env: dict[str, str]) -> None:
    assert mr(env, "run", "ai/smollm2", "Hi", "--max-tokens", "4").returncode == 0
    ps = mr(env, "ps")
    assert ps.returncode == 0
    header, *rows = ps.stdout.strip().splitlines()
    assert header.split()[:5] == ["MODEL", "NAME", "BACKEND", "MODE", "UNTIL"]
    assert rows and rows[0].startswith("smollm2") and "llama.cpp" in rows[0]
    status = json.loads(mr(env, "status", "--json").stdout)
    assert status["running"] is True and status["loaded_models"] == 1
    listing = mr(env, "list").stdout.splitlines()
    assert listing[0].split()[:3] == ["MODEL", "NAME", "PARAMETERS"] and listing[1].startswith("smollm2")
    assert mr(env, "df").returncode == 0
    assert mr(env, "unload", "--all").returncode == 0
    assert mr(env, "ps").stdout.strip().splitlines()[1:] == []
    logs = mr(env, "logs")
    assert logs.returncode == 0 and "/v1/chat/completions" in logs.stdout


def test_context_overflow_is_exit_5_both_ways(env: dict[str, str]) -> None:
    long_prompt = "word " * 3000
    remote = mr(env, "run", "ai/smollm2", long_prompt)
    local = mr(env, "run", "ai/smollm2", long_prompt, "--local", "--ctx-size", "256")
    for result in (remote, local):
        assert result.returncode == 5, result.stderr
        assert result.stderr.startswith("Error: ") and "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1


def test_error_classes_have_distinct_exit_codes(env: dict[str, str], tmp_path: Path) -> None:
    unknown = mr(env, "inspect", "ai/never-heard-of-it")
    assert unknown.returncode == 4 and unknown.stderr.startswith("Error: ")
    offline = {**env, "MR_DEFAULT_REGISTRY": "127.0.0.1:9"}
    unreachable = mr(offline, "pull", "some/model")
    assert unreachable.returncode == 8 and unreachable.stderr.strip().startswith("Error: ")
    no_server = mr({**env, "MR_HOST": "http://127.0.0.1:9"}, "ps")
    assert no_server.returncode == 13 and "mr serve" in no_server.stderr
    assert "Traceback" not in unknown.stderr + unreachable.stderr + no_server.stderr
