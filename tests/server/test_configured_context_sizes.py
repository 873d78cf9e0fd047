"""No context size a client can configure makes llama.cpp abort the server (RELIABILITY 13: a
GGML_ASSERT must not be reachable from a request).

The loaded fuzz suite once died with GGML_ASSERT(ggml_can_mul_mat(a, b)): a fuzzed
`/engines/configure` gave a model a context size that is not a multiple of 32, a later request
reloaded it, and the first embedding request created the embedding context, whose graph
reservation multiplies mismatched matrices for such sizes (llama.cpp rounds the micro-batch up
to a multiple of the 32 sequences per batch, not the outputs). Whether the reload happened before
an embedding case depended on keep-alive timing, hence a "race". A context smaller than the
batch (512) aborted the generation engine the same way: GGML_ASSERT(n_tokens_all <= n_batch).

The server runs as a subprocess, so an abort fails this test instead of killing the suite."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from support.serving import TINY, free_port, start, wait_healthy

# Each one aborted the process before the fix: 1000 and 300 are no multiple of 32 (embeddings),
# 300 and 100 are below the 512-token batch (generation).
SIZES = (1000, 300, 100)


@pytest.fixture
def server(store_root: Path, tmp_path: Path) -> Iterator[tuple[httpx.Client, subprocess.Popen[str]]]:
    env = {"MR_MODELS_DIR": str(store_root), "MR_HOME": str(tmp_path), "MR_CTX_SIZE": "2048",
           "MR_PORT": str(free_port())}
    url = f"http://127.0.0.1:{env['MR_PORT']}"
    proc = start(["--parallel", "2", "--quiet"], env)
    try:
        wait_healthy(url, proc)
        with httpx.Client(base_url=url, timeout=120) as client:
            yield client, proc
    finally:
        if proc.poll() is None:
            proc.terminate()
        proc.communicate(timeout=30)


def _post(client: httpx.Client, proc: subprocess.Popen[str], path: str, body: dict) -> httpx.Response:
    """POST, failing with the server's last words (its GGML_ASSERT line) if it died."""
    try:
        response = client.post(path, json=body)
    except httpx.TransportError:
        response = None
    if response is None or proc.poll() is not None:
        proc.wait(timeout=10)
        last = [line for line in proc.communicate(timeout=10)[1].splitlines() if "GGML" in line]
        pytest.fail(f"the server died on {path} {list(body)}: {last[:1]}")
    return response


def _configure(client: httpx.Client, n_ctx: int) -> None:
    """The fuzzer's path: configure a context size, and the next load uses it."""
    assert client.post("/engines/unload", json={"all": True}).status_code == 200
    r = client.post("/engines/configure", json={"model": TINY, "context_size": n_ctx})
    assert r.status_code == 200 and r.json()["context_size"] == n_ctx


def test_odd_context_sizes_serve_embeddings_and_long_prompts(server) -> None:
    client, proc = server
    for n_ctx in SIZES:
        _configure(client, n_ctx)
        r = _post(client, proc, "/v1/embeddings", {"model": TINY, "input": ["hello", "a b c " * 40]})
        assert r.status_code == 200, r.text
        assert len(r.json()["data"]) == 2
        # One prompt longer than the configured context, and two together longer than the batch
        # llama.cpp allows such a context: never an abort. The context a request gets is the
        # configured one rounded up (1000 -> 1024, 300 -> 512, 100 -> 256): a request that needs
        # more is a 400 naming both counts, one that fits is answered in full.
        [entry] = client.get("/engines/ps").json()
        holds = entry["request_context"]
        assert holds >= n_ctx
        for n_tokens, n in ((n_ctx + 50, 1), (min(n_ctx // 2 + 40, 400), 2)):
            body = {"model": TINY, "prompt": [100 + i % 500 for i in range(n_tokens)], "max_tokens": 2,
                    "n": n, "ignore_eos": True}
            r = _post(client, proc, "/v1/completions", body)
            if n_tokens + 2 > holds:
                assert r.status_code == 400, r.text
                error = r.json()["error"]
                assert error["code"] == "context_length_exceeded"
                assert f"needs {n_tokens + 2} tokens but the context holds {holds} tokens" in error["message"]
            else:
                assert r.status_code == 200, r.text
                answer, usage = r.json(), r.json()["usage"]
                assert [c["finish_reason"] for c in answer["choices"]] == ["length"] * n
                assert (usage["prompt_tokens"], usage["completion_tokens"]) == (n_tokens, 2 * n)
        # The embedder holds at least the configured context, whatever llama.cpp rounds it to.
        r = _post(client, proc, "/v1/embeddings", {"model": TINY, "input": [[100] * n_ctx]})
        assert r.status_code == 200, r.text
        assert r.json()["usage"]["prompt_tokens"] == n_ctx
    assert client.get("/health").status_code == 200
