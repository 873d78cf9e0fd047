"""The request log: GET /engines/requests keeps the last N inference exchanges per model."""

from __future__ import annotations

import json

import httpx

from support.serving import TINY, chat, serve_client, wait_for

KEY = "sk-very-secret-key-1234"


def records(client: httpx.Client, **query: object) -> list[dict]:
    r = client.get("/engines/requests", params=query)
    assert r.status_code == 200, r.text
    return r.json()


def test_exchanges_are_recorded_with_timings_status_and_tokens(store_root, mr_home) -> None:
    with serve_client(store_root, mr_home, request_log_size=3) as client:
        ok = chat(client, TINY, max_tokens=3)
        assert ok.status_code == 200
        body = {"model": TINY, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2,
                "stream": True, "stream_options": {"include_usage": True}}
        with client.stream("POST", "/v1/chat/completions", json=body) as r:
            r.read()
        # a record is made as its response ends on the server, a moment after the client has it all
        assert wait_for(lambda: len(records(client)) == 2, 10)
        bad = chat(client, TINY, temperature=9)
        assert bad.status_code == 400
        got = records(client)
        assert [r["status"] for r in got] == [200, 200, 400]
        first, streamed = got[0], got[1]
        assert first["model"] == TINY and first["path"] == "/v1/chat/completions"
        assert first["prompt_tokens"] > 0 and first["completion_tokens"] == 3
        assert first["duration_ms"] > 0 and first["ttfb_ms"] is not None and not first["stream"]
        assert json.loads(first["request"])["max_tokens"] == 3
        assert json.loads(first["response"])["usage"]["completion_tokens"] == 3
        assert streamed["stream"] and streamed["completion_tokens"] == 2
        for _ in range(3):
            chat(client, TINY)
        assert len(records(client)) == 3  # only the last N per model
        assert records(client, model="ai/smollm2") == []
        assert len(records(client, model="docker.io/ai/tiny:latest")) == 3  # any spelling of the name
        newest = records(client)[-1]["id"]
        assert records(client, after=newest) == []


def test_ollama_and_embeddings_are_recorded_with_their_counts(store_root, mr_home) -> None:
    with serve_client(store_root, mr_home) as client:
        body = {"model": TINY, "messages": [{"role": "user", "content": "hi"}], "options": {"num_predict": 2}}
        with client.stream("POST", "/api/chat", json=body) as r:  # NDJSON, eval counts at the end
            r.read()
        assert client.post("/v1/embeddings", json={"model": TINY, "input": ["a b c"]}).status_code == 200
        ollama, embed = records(client)
    assert ollama["path"] == "/api/chat" and ollama["stream"] and ollama["completion_tokens"] == 2
    assert embed["path"] == "/v1/embeddings" and embed["prompt_tokens"] > 0


def test_bodies_are_capped(store_root, mr_home) -> None:
    with serve_client(store_root, mr_home, request_log_body_bytes=256) as client:
        chat(client, TINY, max_tokens=2, user="x" * 2000)
        (rec,) = records(client)
        assert len(rec["request"].encode()) <= 256 and rec["truncated"]
        assert rec["request_bytes"] > 2000


def test_zero_turns_it_off(store_root, mr_home) -> None:
    with serve_client(store_root, mr_home, request_log_size=0) as client:
        assert chat(client, TINY).status_code == 200
        assert records(client) == []


def test_keys_are_never_recorded(store_root, mr_home) -> None:
    headers = {"Authorization": f"Bearer {KEY}"}
    with serve_client(store_root, mr_home, api_key=KEY) as client:
        body = {"model": TINY, "messages": [{"role": "user", "content": f"my key is {KEY}"}],
                "max_tokens": 2, "api_key": "another-secret-value"}
        assert client.post("/v1/chat/completions", json=body, headers=headers).status_code == 200
        ollama = {**body, "stream": False, "options": {"num_predict": 2}}
        assert client.post("/api/chat", json=ollama, headers={"x-api-key": KEY}).status_code == 200
        assert client.get("/engines/requests").status_code == 401  # the log is behind the key too
        raw = client.get("/engines/requests", headers=headers).text
    assert KEY not in raw and "another-secret-value" not in raw
    assert "Authorization" not in raw and "x-api-key" not in raw
    assert raw.count("[redacted]") >= 2
