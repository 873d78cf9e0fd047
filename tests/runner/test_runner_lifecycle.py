"""Model lifecycle through the HTTP API: lazy load, waiting on a load, keep-alive, memory budget,
LRU eviction, refusal of a model that cannot fit, per-model settings."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from support.serving import SMOL, TINY, chat, loaded, serve, serve_client, wait_for

MIB = 1 << 20


def metric(client: httpx.Client, name: str, model: str) -> float:
    text = client.get("/metrics").text
    match = re.search(rf'^{name}{{model="{re.escape(model)}"}} ([0-9.e+]+)$', text, re.M)
    return float(match.group(1)) if match else 0.0


@pytest.fixture
def budget_server(store_root: Path, tmp_path: Path) -> Iterator[httpx.Client]:
    """A budget that fits SmolLM2 (~301 MiB at 2048 tokens) or the tiny model (~127 MiB), not both."""
    with serve_client(store_root, tmp_path, memory_budget=380 * MIB) as client:
        yield client


def test_nothing_is_loaded_until_first_use(budget_server: httpx.Client) -> None:
    assert loaded(budget_server) == {}
    assert chat(budget_server, TINY).status_code == 200
    assert list(loaded(budget_server)) == ["tiny"]


def test_second_model_evicts_the_idle_first_one(budget_server: httpx.Client) -> None:
    assert chat(budget_server, TINY).status_code == 200
    assert chat(budget_server, SMOL).status_code == 200
    assert list(loaded(budget_server)) == ["smollm2"]
    assert chat(budget_server, TINY).status_code == 200
    assert list(loaded(budget_server)) == ["tiny"]


def test_a_model_larger_than_the_budget_is_refused_before_loading(budget_server: httpx.Client) -> None:
    r = budget_server.post("/engines/configure", json={"model": SMOL, "context_size": 8192})
    assert r.status_code == 200 and r.json()["context_size"] == 8192
    r = chat(budget_server, SMOL)
    assert r.status_code == 507, r.text
    error = r.json()["error"]
    assert error["code"] == "insufficient_memory"
    assert "MiB" in error["message"] and "8192 tokens" in error["message"] and "budget" in error["message"]
    assert "smollm2" not in loaded(budget_server)
    assert budget_server.get("/health").status_code == 200
    assert chat(budget_server, TINY).status_code == 200  # the server stays useful


def test_a_busy_model_is_not_evicted(budget_server: httpx.Client) -> None:
    body = {"model": SMOL, "messages": [{"role": "user", "content": "Tell a long story."}],
            "max_tokens": 400, "stream": True, "logit_bias": {"0": -100, "2": -100, "4": -100}}  # no EOS
    with budget_server.stream("POST", "/v1/chat/completions", json=body) as stream:
        lines = stream.iter_lines()  # keep a reference: a dropped iterator closes the response
        assert "error" not in next(lines)
        assert loaded(budget_server)["smollm2"]["active_requests"] == 1  # serving this stream now
        r = chat(budget_server, TINY)
        assert r.status_code == 503 and r.headers["retry-after"]
        assert "busy" in r.json()["error"]["message"]
        assert "smollm2" in loaded(budget_server)


def test_requests_during_a_load_wait_for_it_and_load_once(store_root: Path, tmp_path: Path) -> None:
    with serve(store_root, tmp_path) as s:
        async def burst() -> list[int]:
            async with httpx.AsyncClient(base_url=s.url, timeout=60) as c:
                body = {"model": TINY, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
                rs = await asyncio.gather(*(c.post("/v1/chat/completions", json=body) for _ in range(6)))
                return [r.status_code for r in rs]

        assert asyncio.run(burst()) == [200] * 6
        with httpx.Client(base_url=s.url) as c:
            assert metric(c, "mr_model_loads_total", "tiny") == 1


def test_keep_alive_expiry_and_zero(store_root: Path, tmp_path: Path) -> None:
    with serve_client(store_root, tmp_path, keep_alive=1.0) as c:
        assert chat(c, TINY).status_code == 200
        assert "tiny" in loaded(c)
        assert wait_for(lambda: not loaded(c), 4), "idle model still loaded after its keep-alive"
    with serve_client(store_root, tmp_path, keep_alive=0.0) as c:
        assert chat(c, TINY).status_code == 200
        assert loaded(c) == {}


def test_per_model_settings_persist_and_show_in_ps(store_root: Path, tmp_path: Path) -> None:
    with serve_client(store_root, tmp_path) as c:
        r = c.post("/engines/configure", json={"model": TINY, "context_size": 1024, "parallel": 2,
                                               "keep_alive": "10m"})
        assert r.status_code == 200, r.text
    with serve_client(store_root, tmp_path) as c:  # a restart
        assert chat(c, TINY).status_code == 200
        entry = loaded(c)["tiny"]
        assert (entry["context_size"], entry["parallel"], entry["keep_alive"]) == (1024, 2, "10m")
        bad = c.post("/engines/configure", json={"model": TINY, "parallel": 0})
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "parallel"


def test_unload_endpoint(store_root: Path, tmp_path: Path) -> None:
    with serve_client(store_root, tmp_path) as c:
        assert chat(c, TINY).status_code == 200
        done = {"unloaded_runners": 1, "draining_runners": 0}
        assert c.post("/engines/unload", json={"models": [TINY]}).json() == done
        assert loaded(c) == {}
        assert chat(c, TINY).status_code == 200
        assert c.post("/engines/unload", json={"all": True}).json() == done
        assert c.post("/engines/unload", json={}).status_code == 400
