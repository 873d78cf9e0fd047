"""The stress reproducer of the loaded fuzz suite's GGML_ASSERT, kept as a test: several clients at
once send the request kinds that create or share native contexts (embeddings of odd sizes and
token lists, reranks, tokenize and detokenize, completions from token ids, chat) while others
reconfigure the model's context size and parallel slots and unload it, so contexts are created
lazily, reloaded with new shapes and computed side by side. The server (a subprocess: an abort
fails this test, not the suite) must answer every request without a 5xx other than a clean 503
and stay alive. Before the fix it aborted within seconds (GGML_ASSERT(ggml_can_mul_mat(a, b)))."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.serving import TINY, free_port, start, wait_healthy

SECONDS = 20
CLIENTS = 4


def _text(rng: random.Random) -> str:
    return rng.choice(["a", "hello world", "x " * rng.randint(1, 700), "\u00e9\u4e16" * rng.randint(1, 40)])


def _request(rng: random.Random) -> tuple[str, str, dict[str, Any]]:
    """(kind, path, body): one request of the suspect kinds."""
    kind = rng.choice(["embed", "embed_ids", "rerank", "tokenize", "detokenize", "completion_ids", "chat",
                       "reconfigure", "reconfigure"])
    body: dict[str, Any] = {"model": TINY}
    if kind == "embed":
        path, body["input"] = "/v1/embeddings", [_text(rng) for _ in range(rng.randint(1, 40))]
        body["truncate"] = rng.random() < 0.5
    elif kind == "embed_ids":
        path, body["input"] = "/v1/embeddings", [[rng.randint(0, 49151) for _ in range(rng.randint(1, 600))]
                                                 for _ in range(rng.randint(1, 8))]
    elif kind == "rerank":
        path, body["query"], body["documents"] = "/rerank", _text(rng), [_text(rng) for _ in range(3)]
    elif kind == "tokenize":
        path, body["content"], body["with_pieces"] = "/tokenize", _text(rng), rng.random() < 0.5
    elif kind == "detokenize":
        path, body["tokens"] = "/detokenize", [rng.randint(0, 49151) for _ in range(rng.randint(0, 30))]
    elif kind == "completion_ids":
        path = "/v1/completions"
        body.update(prompt=[rng.randint(0, 49151) for _ in range(rng.randint(1, 700))],
                    max_tokens=rng.randint(1, 8), n=rng.randint(1, 3), ignore_eos=True)
    elif kind == "chat":
        path = "/v1/chat/completions"
        body.update(messages=[{"role": "user", "content": _text(rng)}], max_tokens=rng.randint(1, 8),
                    stream=rng.random() < 0.5, ignore_eos=True)
    else:  # sizes that are no multiple of 32, some below the 512-token batch; the next load uses them
        path = "/engines/configure"
        body.update(context_size=rng.choice([100, 300, 777, 1000, 2000]), parallel=rng.choice([1, 3, 4]),
                    keep_alive=rng.choice(["0", "1s", "5m"]))
    return kind, path, body


def _client(url: str, seed: int, until: float, seen: Counter[tuple[str, int]], bad: list[str]) -> None:
    rng = random.Random(seed)
    with httpx.Client(base_url=url, timeout=120) as client:
        while time.monotonic() < until:
            kind, path, body = _request(rng)
            try:
                status = client.post(path, json=body).status_code
                if kind == "reconfigure":  # and reload: the model drains, the next request loads it
                    status = max(status, client.post("/engines/unload", json={"models": [TINY]}).status_code)
            except httpx.TransportError as exc:
                status = -1
                bad.append(f"{kind}: {type(exc).__name__}")
            seen[(kind, status)] += 1
            if status >= 500 and status != 503:
                bad.append(f"{kind}: {status}")


@pytest.mark.slow
def test_mixed_requests_with_reconfigured_contexts_never_abort(store_root: Path, tmp_path: Path) -> None:
    env = {"MR_MODELS_DIR": str(store_root), "MR_HOME": str(tmp_path), "MR_CTX_SIZE": "1024",
           "MR_PORT": str(free_port())}
    url = f"http://127.0.0.1:{env['MR_PORT']}"
    proc = start(["--quiet"], env)
    seen: Counter[tuple[str, int]] = Counter()
    bad: list[str] = []
    try:
        wait_healthy(url, proc)
        until = time.monotonic() + SECONDS
        clients = [threading.Thread(target=_client, args=(url, seed, until, seen, bad))
                   for seed in range(CLIENTS)]
        for client in clients:
            client.start()
        for client in clients:
            client.join(timeout=SECONDS + 180)
        alive = proc.poll() is None
    finally:
        if proc.poll() is None:
            proc.terminate()
        _out, err = proc.communicate(timeout=30)
    asserts = [line for line in err.splitlines() if "GGML_ASSERT" in line]
    assert alive and not asserts, asserts or err[-2000:]
    assert not bad, (bad[:10], seen)
    assert sum(n for (kind, status), n in seen.items() if kind.startswith("embed") and status == 200) > 0
