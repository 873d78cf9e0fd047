"""Ctrl+C (RELIABILITY 14): it stops a one-shot `mr run` within a token, in-process or through a
server (whose slot is then free), with exit code 130; it leaves `mr pull` a partial download that
the next pull resumes with a Range request."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pexpect
import pytest

# A long answer whatever the model would say: 4,000 tokens take a minute or more on a small CPU.
LONG = ["--max-tokens", "4000", "--ignore-eos", "--temperature", "0"]


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "MR_HOME": str(tmp_path), "TERM": "dumb", "MR_DEBUG": "", **extra}


@pytest.mark.slow
def test_ctrl_c_stops_a_local_mr_run_within_a_token(smollm2_path: Path, tmp_path: Path) -> None:
    # A real terminal: Ctrl+C is the tty's interrupt character, not a signal sent by hand.
    child = pexpect.spawn(sys.executable, ["-m", "mr", "run", str(smollm2_path), "Count from one.", *LONG],
                          env=_env(tmp_path, MR_HOST="http://127.0.0.1:9"), encoding="utf-8",
                          timeout=120, dimensions=(40, 200))
    child.expect(r"\S+(\s+\S+){5}")  # the answer is streaming
    child.sendintr()
    interrupted = time.monotonic()
    child.expect(pexpect.EOF, timeout=30)
    stopped_after = time.monotonic() - interrupted
    after = child.before
    child.close()
    assert child.exitstatus == 130, after  # not 0: an interrupted answer is not a complete one
    assert "Traceback" not in after and "Error" not in after
    assert stopped_after < 3, f"{stopped_after:.1f}s after Ctrl+C"
    # What was still printed after the keystroke: the tokens already on their way, no more.
    assert len(after.split()) <= 10, after


@pytest.fixture
def server(smollm2_path: Path, tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """`mr serve` with SmolLM2 in a store of its own: (its URL, the environment of its clients)."""
    from mr.store import Store, package_gguf

    package_gguf(Store(tmp_path / "models"), smollm2_path, "ai/smollm2")
    port = _free_port()
    env = _env(tmp_path, MR_MODELS_DIR=str(tmp_path / "models"), MR_PORT=str(port),
               MR_HOST=f"http://127.0.0.1:{port}")
    proc = subprocess.Popen([sys.executable, "-m", "mr", "serve", "--quiet"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not _healthy(env["MR_HOST"]):
            assert proc.poll() is None and time.monotonic() < deadline, "mr serve did not come up"
            time.sleep(0.1)
        yield env["MR_HOST"], env
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


@pytest.mark.slow
def test_sigint_stops_mr_run_through_a_server_and_frees_its_slot(server: tuple[str, dict[str, str]]) -> None:
    url, env = server
    cli = subprocess.Popen([sys.executable, "-m", "mr", "run", "ai/smollm2", "Count from one.", *LONG],
                           env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert cli.stdout is not None and cli.stdout.read(20), "the answer never started"
    (model,) = httpx.get(url + "/engines/ps").json()
    assert model["busy_slots"] == 1
    cli.send_signal(signal.SIGINT)
    interrupted = time.monotonic()
    _out, err = cli.communicate(timeout=30)
    assert time.monotonic() - interrupted < 3
    assert cli.returncode == 130 and "Traceback" not in err, err
    deadline = time.monotonic() + 2  # the server notices the closed stream at its next token
    while _busy(url) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _busy(url) == 0, "the server kept generating for a client that was gone"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url + "/health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _busy(url: str) -> int:
    return int(httpx.get(url + "/engines/ps").json()[0]["busy_slots"])
