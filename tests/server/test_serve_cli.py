"""`mr serve` as a process (flags, env twins, request log, clean SIGTERM/SIGINT shutdown) and the
runtime verbs (`ps`, `status`, `unload`, `configure`) against a running server."""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from mr.errors import ServerNotRunningError
from support.serving import SMOL, TINY, free_port, serve, start, wait_healthy
from support.sse import parse_sse


@pytest.fixture
def env(store_root: Path, tmp_path: Path) -> dict[str, str]:
    return {"MR_MODELS_DIR": str(store_root), "MR_HOME": str(tmp_path), "MR_CTX_SIZE": "2048",
            "MR_PORT": str(free_port())}


def test_sigterm_ends_streams_with_an_error_and_exits_zero(env: dict[str, str]) -> None:
    url = f"http://127.0.0.1:{env['MR_PORT']}"  # MR_PORT, not a flag, chose this port
    proc = start(["--parallel", "2"], env)
    try:
        wait_healthy(url, proc)
        body = {"model": SMOL, "messages": [{"role": "user", "content": "A long story, please."}],
                "max_tokens": 1500, "stream": True, "logit_bias": {"0": -100, "2": -100, "4": -100}}
        got: dict[str, bytes] = {}
        started = threading.Event()

        def consume() -> None:
            with httpx.stream("POST", url + "/v1/chat/completions", json=body, timeout=60) as r:
                raw = b""
                for chunk in r.iter_bytes():
                    raw += chunk
                    started.set()
                got["raw"] = raw

        reader = threading.Thread(target=consume)
        reader.start()
        assert started.wait(30)
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        reader.join(15)
        _, stderr = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr
    payloads, done = parse_sse(got["raw"])
    assert not done, "a stream cut short by shutdown must not look complete"
    assert "error" in payloads[-1], got["raw"][-600:]
    assert payloads[-1]["error"]["code"] == "cut_short"
    assert "shutting down" in payloads[-1]["error"]["message"]
    assert all(c["finish_reason"] is None for p in payloads[:-1] for c in p["choices"])
    assert "POST /v1/chat/completions 200" in stderr  # one log line per request
    assert "stopped" in stderr


def test_sigint_exits_zero_and_flags_beat_env(env: dict[str, str]) -> None:
    port = free_port()
    proc = start(["--port", str(port), "--keep-alive", "10m", "--quiet"], env)
    try:
        wait_healthy(f"http://127.0.0.1:{port}", proc)
        status = httpx.get(f"http://127.0.0.1:{port}/engines/status").json()
        assert status["defaults"]["keep_alive"] == "10m"
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr
    assert "GET /engines/status" not in stderr  # --quiet


def test_listening_beyond_loopback_needs_a_key_or_no_auth(env: dict[str, str]) -> None:
    refused = start(["--host", "0.0.0.0"], env)  # started, with a warning, before
    _, stderr = refused.communicate(timeout=30)
    assert refused.returncode == 2 and "refusing to listen on 0.0.0.0 without an API key" in stderr
    assert "--no-auth" in stderr and "Traceback" not in stderr
    proc = start(["--host", "0.0.0.0", "--no-auth"], env)
    try:
        wait_healthy(f"http://127.0.0.1:{env['MR_PORT']}", proc)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "WARNING" in stderr and "API key" in stderr and "loopback clients only" in stderr


def test_bad_flag_values_are_usage_errors(env: dict[str, str]) -> None:
    from mr.cli.serve import serve as serve_cmd

    result = CliRunner().invoke(serve_cmd, ["--keep-alive", "soon"], env=env)
    assert result.exit_code == 2 and "keep-alive" in result.output


def test_runtime_verbs_talk_to_the_server(store_root: Path, tmp_path: Path) -> None:
    from mr.cli.runtime_cmds import configure, ps, status, unload

    with serve(store_root, tmp_path) as server:
        env = {"MR_HOST": server.url, "MR_HOME": str(tmp_path), "MR_MODELS_DIR": str(store_root)}
        runner = CliRunner()
        assert "is running" in runner.invoke(status, [], env=env).output
        httpx.post(server.url + "/v1/chat/completions", timeout=60,
                   json={"model": TINY, "messages": [{"role": "user", "content": "x"}], "max_tokens": 1})
        table = runner.invoke(ps, [], env=env).output
        assert table.splitlines()[0].split()[:2] == ["MODEL", "NAME"] and "tiny" in table
        assert json.loads(runner.invoke(ps, ["--json"], env=env).output)[0]["model_name"] == "tiny"
        result = runner.invoke(configure, ["--keep-alive", "1h", "--parallel", "2", TINY], env=env)
        assert result.exit_code == 0 and "parallel=2" in result.output, result.output
        assert json.loads(runner.invoke(ps, ["--json"], env=env).output)[0]["keep_alive"] == "1h"
        assert "Unloaded 1 model" in runner.invoke(unload, ["--all"], env=env).output
    down = {"MR_HOST": server.url, "MR_HOME": str(tmp_path), "MR_MODELS_DIR": str(store_root)}
    result = CliRunner().invoke(status, [], env=down)
    assert isinstance(result.exception, ServerNotRunningError) and "no mr server" in str(result.exception)
    assert result.exception.exit_code == 13
    offline = CliRunner().invoke(configure, ["--context-size", "1024", TINY], env=down)
    assert offline.exit_code == 0, offline.output
    saved = json.loads((tmp_path / "model-settings.json").read_text())
    assert saved["docker.io/ai/tiny:latest"]["context_size"] == 1024


@pytest.mark.parametrize(("value", "url"), [
    ("http://127.0.0.1:8080", "http://127.0.0.1:8080"), ("0.0.0.0", "http://127.0.0.1:12434"),
    ("myhost:9000", "http://myhost:9000"), ("localhost", "http://localhost:12434"),
])
def test_mr_host_may_be_a_url_or_a_bind_address(monkeypatch: pytest.MonkeyPatch, value: str,
                                                url: str) -> None:
    from mr.cli.runtime_cmds import base_url

    monkeypatch.setenv("MR_HOST", value)
    assert base_url() == url


def test_the_experiment_switches_reach_the_server_through_serve_with(env: dict[str, str]) -> None:
    # No flag or variable sets them (mr.config); the bench's ceiling variants give them this way.
    url = f"http://127.0.0.1:{env['MR_PORT']}"
    proc = start(["--quiet"], {**env, "MR_DIRECT_STREAMS": "1"}, direct_streams=False)
    try:
        wait_healthy(url, proc)
        body = {"model": TINY, "max_tokens": 4, "stream": True,
                "messages": [{"role": "user", "content": "hi"}]}
        with httpx.stream("POST", url + "/v1/chat/completions", json=body, timeout=60) as r:
            assert r.status_code == 200 and parse_sse(r.read(), random_weights=True)[1]
        metrics = httpx.get(url + "/metrics", timeout=10).text
        assert 'mr_streamed_responses_total{path="asgi"} 1' in metrics
        assert 'mr_streamed_responses_total{path="direct"}' not in metrics.replace(
            'mr_streamed_responses_total{path="direct"} 0', "")
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
