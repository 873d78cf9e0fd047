"""The memory budget counts everything a model holds (issue 12 item 7): a busy model unloaded
through /engines/unload drains (reported so, still in ps and the budget, no second copy in a
tight budget), and the lazily created embedding context is counted. Embedding requests are
bounded like generation (item 9d): 503 + Retry-After past the wait queue, one input limit on
every route, token ids embedded as given."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from mr.runner import estimate
from support.serving import SMOL, TINY, loaded, serve_client, wait_for
from support.sse import parse_sse

CTX = 256


@pytest.fixture(scope="module")
def tiny_memory(tiny_gguf: Path) -> Any:
    return estimate([tiny_gguf], CTX)


def _long_stream(url: str, got: dict[str, bytes], started: threading.Event) -> None:
    body = {"model": SMOL, "messages": [{"role": "user", "content": "go"}], "max_tokens": 300,
            "ignore_eos": True, "stream": True}
    with httpx.stream("POST", url + "/v1/chat/completions", json=body, timeout=120) as r:
        raw = b""
        for chunk in r.iter_bytes():
            raw += chunk
            started.set()
        got["raw"] = raw


@pytest.mark.slow
def test_a_busy_model_unloaded_drains_and_keeps_its_memory(store_root: Path, tmp_path: Path,
                                                           smollm2_path: Path) -> None:
    memory = estimate([smollm2_path], 512)
    budget = int(memory.total * 1.5)  # one copy fits, two do not
    with serve_client(store_root, tmp_path, memory_budget=budget, ctx_size=512, parallel=1) as c:
        got: dict[str, bytes] = {}
        started = threading.Event()
        reader = threading.Thread(target=_long_stream, args=(str(c.base_url), got, started))
        reader.start()
        assert started.wait(60)
        assert c.post("/engines/unload", json={"models": [SMOL]}).json() == {
            "unloaded_runners": 0, "draining_runners": 1}  # was {"unloaded_runners": 1}
        entry = loaded(c)["smollm2"]
        assert entry["status"] == "draining" and entry["until"] == "draining"
        assert c.get("/engines/status").json()["memory"]["used"] >= memory.total
        second = c.post("/v1/chat/completions", json={"model": SMOL, "max_tokens": 1,
                                                      "messages": [{"role": "user", "content": "x"}]})
        assert second.status_code == 503, second.text  # a second copy would not fit
        assert second.json()["error"]["code"] == "model_busy" and second.headers["retry-after"]
        reader.join(120)
        payloads, done = parse_sse(got["raw"])
        assert done and payloads[-1]["choices"][0]["finish_reason"] == "length"  # it finished its answer
        assert wait_for(lambda: loaded(c) == {}, 10)
        assert c.get("/engines/status").json()["memory"]["used"] == 0
        third = c.post("/v1/chat/completions", json={"model": SMOL, "max_tokens": 1,
                                                     "messages": [{"role": "user", "content": "x"}]})
        assert third.status_code == 200


def test_the_embedding_context_is_counted(store_root: Path, tmp_path: Path, tiny_memory: Any) -> None:
    extra = tiny_memory.kv_cache + tiny_memory.compute
    tight = tiny_memory.total + extra // 2  # the model fits, the model and its embedder do not
    with serve_client(store_root, tmp_path, memory_budget=tight, ctx_size=CTX) as c:
        assert c.post("/v1/embeddings", json={"model": TINY, "input": "hello"}).status_code == 507
        assert c.get("/engines/status").json()["memory"]["used"] == tiny_memory.total
    with serve_client(store_root, tmp_path, memory_budget=tiny_memory.total * 4, ctx_size=CTX) as c:
        assert c.post("/v1/chat/completions", json={"model": TINY, "max_tokens": 1, "messages": [
            {"role": "user", "content": "x"}]}).status_code == 200
        assert loaded(c)["tiny"]["memory"] == tiny_memory.total
        assert c.post("/v1/embeddings", json={"model": TINY, "input": "hello"}).status_code == 200
        assert loaded(c)["tiny"]["memory"] == tiny_memory.total + extra
        assert c.get("/engines/status").json()["memory"]["used"] == tiny_memory.total + extra


async def _many(url: str, n: int) -> list[httpx.Response]:
    texts = [f"sentence number {i} " * 20 for i in range(64)]
    async with httpx.AsyncClient(base_url=url, timeout=120) as client:
        return list(await asyncio.gather(*(
            client.post("/v1/embeddings", json={"model": TINY, "input": texts}) for _ in range(n))))


def test_embeddings_are_refused_past_the_queue(store_root: Path, tmp_path: Path) -> None:
    with serve_client(store_root, tmp_path, ctx_size=2048) as c:
        assert c.post("/v1/embeddings", json={"model": TINY, "input": "warm"}).status_code == 200
        responses = asyncio.run(_many(str(c.base_url), 40))  # all 200 before, the last after 105 s
        statuses = [r.status_code for r in responses]
        assert set(statuses) == {200, 503}, statuses
        assert statuses.count(200) >= 9  # the one running and the 8 that may wait
        refused = next(r for r in responses if r.status_code == 503)
        assert refused.headers["retry-after"] == "1"
        assert c.post("/v1/embeddings", json={"model": TINY, "input": "after"}).status_code == 200


def test_one_input_limit_and_token_ids_as_given(store_root: Path, tmp_path: Path) -> None:
    with serve_client(store_root, tmp_path, ctx_size=2048) as c:
        too_many = ["x"] * 2049
        assert c.post("/api/embed", json={"model": TINY, "input": too_many}).status_code == 400  # 10,000 went
        assert c.post("/v1/embeddings", json={"model": TINY, "input": too_many}).status_code == 400
        # 1 is <|im_start|>: as text it would be re-tokenized differently (or refused)
        r = c.post("/v1/embeddings", json={"model": TINY, "input": [[1, 504, 3458]]})
        assert r.status_code == 200, r.text
        assert r.json()["usage"]["prompt_tokens"] == 3
        for ids in ([[10**6]], [[2**40]], [2**40, 1], [[-5]]):  # 2**40 was a 500 (found by fuzzing)
            bad = c.post("/v1/embeddings", json={"model": TINY, "input": ids})
            assert bad.status_code == 400 and bad.json()["error"]["param"] == "input", bad.text
