"""A cut-short answer never looks complete (RELIABILITY 31): KV cache full mid-generation gives
an error event in a stream and a 503 without one; shutdown ends streams with an error event."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from mr.errors import CutShortError
from support.serving import SMOL, TINY, free_port, serve, start, wait_healthy
from support.sse import parse_sse

BODY = {"model": TINY, "messages": [{"role": "user", "content": "hello there"}], "max_tokens": 200,
        "ignore_eos": True}


async def _four_at_once(url: str, stream: bool) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=url, timeout=120) as client:
        return list(await asyncio.gather(*(
            client.post("/v1/chat/completions", json={**BODY, "stream": stream}) for _ in range(4))))


def test_kv_cache_full_is_an_error_not_a_length_finish(store_root: Path, tmp_path: Path) -> None:
    # 4 slots share 256 cells: four answers of 200 tokens cannot all fit, the newest are preempted.
    with serve(store_root, tmp_path, ctx_size=256, parallel=4) as running:
        streamed = asyncio.run(_four_at_once(running.url, stream=True))
        plain = asyncio.run(_four_at_once(running.url, stream=False))
    cut = 0
    for response in streamed:
        assert response.status_code == 200
        payloads, done = parse_sse(response.content, random_weights=True)
        if "error" in payloads[-1]:
            cut += 1
            assert not done and payloads[-1]["error"]["code"] == "cut_short"
            assert "KV cache is full" in payloads[-1]["error"]["message"]
            assert all(c["finish_reason"] is None for p in payloads[:-1] for c in p["choices"])
        else:
            assert done and payloads[-1]["choices"][0]["finish_reason"] == "length"
    assert 1 <= cut < 4
    statuses = sorted(r.status_code for r in plain)
    assert 200 in statuses and 503 in statuses, statuses
    for response in plain:
        if response.status_code == 503:
            assert response.json()["error"]["code"] == "cut_short"
            assert response.headers["retry-after"] == "1"
        else:
            assert response.json()["choices"][0]["finish_reason"] == "length"


def _run_cli_until_output(url: str, env: dict[str, str]) -> subprocess.Popen[str]:
    cli_env = {**os.environ, **env, "MR_HOST": url, "MR_DEBUG": ""}
    proc = subprocess.Popen([sys.executable, "-m", "mr", "run", SMOL, "Tell me a very long story.",
                             "--max-tokens", "1500"], env=cli_env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.read(1), "the answer never started"
    return proc


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_mr_run_exits_nonzero_when_the_answer_is_cut(store_root: Path, tmp_path: Path,
                                                     sig: signal.Signals) -> None:
    # SIGTERM: the server sends an error event; SIGKILL: the stream just stops, with no [DONE].
    env = {"MR_MODELS_DIR": str(store_root), "MR_HOME": str(tmp_path), "MR_CTX_SIZE": "2048",
           "MR_PORT": str(free_port())}
    url = f"http://127.0.0.1:{env['MR_PORT']}"
    server = start(["--parallel", "1"], env)
    try:
        wait_healthy(url, server)
        cli = _run_cli_until_output(url, env)
        server.send_signal(sig)
        _, stderr = cli.communicate(timeout=60)
    finally:
        for proc in (server,):
            if proc.poll() is None:
                proc.kill()
        server.communicate(timeout=30)
    assert cli.returncode == CutShortError.exit_code, stderr
    assert stderr.startswith("Error: ") and ("cut short" in stderr or "lost mid-answer" in stderr)
    assert "Traceback" not in stderr and len(stderr.strip().splitlines()) == 1
    if sig == signal.SIGTERM:
        assert "shutting down" in stderr
