"""A server with `--rpc`: SmolLM2 split between this process and two real `mr worker` processes on
loopback ports. The split answers as the local server does; killing a worker ends the request it
was serving with an error, the server stays up, and the model reloads once the worker is back."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from support.serving import SMOL, TINY, ServerThread, loaded, make_settings
from support.sse import parse_sse
from support.workers import Worker, free_port

pytestmark = pytest.mark.slow

# Over 64 tokens: the last prompt token gets a step of its own with or without workers (a short
# prompt computes it with the rest only on plain local CPU weights), so both run the same kernels.
QUESTION = [{"role": "user", "content": "Cheetahs live in Africa and Iran. " * 10
             + "How fast does a cheetah run?"}]
GREEDY = {"temperature": 0, "max_tokens": 24}


def _serve(store_root: Path, tmp_path: Path, **overrides: object) -> ServerThread:
    from mr.server import create_app

    settings = make_settings(store_root, tmp_path, settings_path=str(tmp_path / "settings.json"),
                             parallel=2, **overrides)
    return ServerThread(create_app(settings))


def _answer(client: httpx.Client, model: str = SMOL) -> dict:
    response = client.post("/v1/chat/completions", json={"model": model, "messages": QUESTION, **GREEDY})
    assert response.status_code == 200, response.text
    return response.json()


def test_the_split_answers_as_the_local_server_and_ps_shows_the_workers(
        store_root: Path, tmp_path: Path, workers: list[Worker]) -> None:
    # Workers compute with ggml's plain CPU kernels (weights cannot be repacked over RPC): the
    # local server does the same (--no-repack), so both run the same arithmetic.
    with _serve(store_root, tmp_path, repack=False) as running, \
            httpx.Client(base_url=running.url, timeout=120) as client:
        local = _answer(client)["choices"][0]["message"]["content"]
    endpoints = [w.endpoint for w in workers]
    # A budget the model does not fit alone: the workers' memory counts in it.
    with _serve(store_root, tmp_path, rpc=endpoints, repack=False, memory_budget=150 << 20) as running, \
            httpx.Client(base_url=running.url, timeout=120) as client:
        assert _answer(client)["choices"][0]["message"]["content"] == local
        model = loaded(client)["smollm2"]
        hosts = {p["host"]: p for p in model["placement"]}
        assert set(hosts) == {"", *endpoints}
        assert all(p["layers"] > 0 for p in hosts.values())
        assert {w["endpoint"] for w in model["workers"]} == set(endpoints)
        assert model["memory"] < 150 << 20  # this machine's share only
        status = client.get("/engines/status").json()
        assert set(status["memory"]["workers"]) == set(endpoints)
    with _serve(store_root, tmp_path, memory_budget=150 << 20) as running, \
            httpx.Client(base_url=running.url, timeout=120) as client:
        assert client.post("/v1/chat/completions", json={"model": SMOL, "messages": QUESTION,
                                                         **GREEDY}).status_code == 507


def test_a_worker_down_at_load_is_a_clear_error(store_root: Path, tmp_path: Path) -> None:
    endpoint = f"127.0.0.1:{free_port()}"
    with _serve(store_root, tmp_path, rpc=[endpoint]) as running, \
            httpx.Client(base_url=running.url, timeout=120) as client:
        response = client.post("/v1/chat/completions", json={"model": SMOL, "messages": QUESTION, **GREEDY})
        assert response.status_code == 422
        message = response.json()["error"]["message"]
        assert endpoint in message and "RPC worker" in message


def test_a_worker_killed_mid_stream_ends_that_request_with_an_error(
        store_root: Path, tmp_path: Path, workers: list[Worker]) -> None:
    endpoints = [w.endpoint for w in workers]
    with _serve(store_root, tmp_path, rpc=endpoints) as running, \
            httpx.Client(base_url=running.url, timeout=120) as client:
        # ai/tiny stays on this machine: it keeps answering while a worker is gone
        assert client.post("/engines/configure", json={"model": TINY, "rpc": "none"}).status_code == 200
        body = {"model": SMOL, "messages": QUESTION, "temperature": 0, "max_tokens": 1800,
                "ignore_eos": True, "stream": True}
        raw = b""
        with client.stream("POST", "/v1/chat/completions", json=body) as stream:
            for chunk in stream.iter_bytes():
                raw += chunk
                if raw.count(b"data: ") == 3:
                    workers[1].kill()
        payloads, done = parse_sse(raw)
        assert not done
        assert workers[1].endpoint in payloads[-1]["error"]["message"]
        assert client.get("/health").status_code == 200
        assert _answer(client, TINY)["choices"][0]["finish_reason"] in ("stop", "length")
        assert "smollm2" not in loaded(client)  # unloaded: it lost a worker
        # Still down: the load says which worker; back on its port: the model loads again.
        down = client.post("/v1/chat/completions", json={"model": SMOL, "messages": QUESTION, **GREEDY})
        assert down.status_code == 422 and workers[1].endpoint in down.text
        with Worker(tmp_path, port=workers[1].port):
            assert _answer(client)["choices"][0]["message"]["content"]
            assert loaded(client)["smollm2"]["workers"]
