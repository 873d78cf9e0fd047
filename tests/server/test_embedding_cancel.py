"""Large embedding requests can be stopped (RELIABILITY 24 and 29): a client that leaves frees the
model's embedding context within a step, and SIGTERM ends the request with a clean 503 and stops
the server within seconds. Before, the native call ran to its end (minutes for a large request)
in a worker thread: the next embedding waited behind it, and a stopping server answered 500
after its graceful timeout and then could not exit until the thread was done."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import httpx
import pytest

from support.serving import SMOL, free_port, serve, start, wait_healthy

# Minutes of prefill for SmolLM2 on a small CPU, tens of seconds on a large one; under the
# per-request text limit (mr.engine.limits.MAX_REQUEST_CHARS).
BIG = {"model": SMOL, "input": ["word " * 900] * 200}
SMALL = {"model": SMOL, "input": ["hello"]}


@pytest.mark.slow
def test_a_client_that_leaves_frees_the_embedding_context(store_root: Path, tmp_path: Path) -> None:
    with serve(store_root, tmp_path) as running, httpx.Client(base_url=running.url, timeout=60) as client:
        assert client.post("/v1/embeddings", json=SMALL).status_code == 200  # loaded, context made
        with pytest.raises(httpx.ReadTimeout):
            client.post("/v1/embeddings", json=BIG, timeout=3)  # gives up: the socket closes
        started = time.monotonic()
        r = client.post("/v1/embeddings", json=SMALL)
        assert r.status_code == 200
        assert time.monotonic() - started < 10, "the abandoned request kept the embedding context"


@pytest.mark.slow
def test_sigterm_during_a_large_embedding_is_a_clean_503_and_a_quick_exit(store_root: Path,
                                                                          tmp_path: Path) -> None:
    env = {"MR_MODELS_DIR": str(store_root), "MR_HOME": str(tmp_path), "MR_PORT": str(free_port())}
    url = f"http://127.0.0.1:{env['MR_PORT']}"
    proc = start(["--quiet"], env)
    answers: list[httpx.Response] = []
    try:
        wait_healthy(url, proc)
        assert httpx.post(url + "/v1/embeddings", json=SMALL, timeout=60).status_code == 200
        big = threading.Thread(target=lambda: answers.append(httpx.post(url + "/v1/embeddings", json=BIG,
                                                                        timeout=120)))
        big.start()
        time.sleep(3)  # tokenized and computing
        proc.send_signal(signal.SIGTERM)
        started = time.monotonic()
        proc.wait(timeout=30)
        assert time.monotonic() - started < 8, "the server waited for the embedding"
        big.join(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=30)
    assert proc.returncode == 0
    (answer,) = answers
    assert answer.status_code == 503 and answer.json()["error"]["code"] == "cut_short"
    assert "shutting down" in answer.json()["error"]["message"]
