"""A cut-short answer never looks complete on any route (RELIABILITY 31 and 43): the chat route's
test (test_cut_short.py) on text completions, Anthropic Messages, Responses and Ollama's chat and
generate. Four answers of 200 tokens share 256 KV cells, so the newest are preempted mid-answer.

What each test guards: a route that ended a preempted answer like a finished one (`[DONE]`,
`message_stop`, `response.completed`/`incomplete`, `done: true`, or a 200 without a stream) would
hand a client a truncated answer as if it were whole. Every cut answer must be an error in the
route's own dialect, and the others must end normally; afterwards nothing is leased."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.serving import TINY, free_port, loaded, serve, start, wait_for, wait_healthy

PROMPT = "hello there"
MESSAGES = [{"role": "user", "content": PROMPT}]
OLLAMA_OPTIONS = {"num_predict": 200, "seed": 7}  # Ollama has no ignore_eos: see _ollama_whole
ROUTES: dict[str, tuple[str, dict[str, Any]]] = {
    "completions": ("/v1/completions", {"prompt": PROMPT, "max_tokens": 200, "ignore_eos": True}),
    "anthropic": ("/v1/messages", {"messages": MESSAGES, "max_tokens": 200, "ignore_eos": True}),
    "responses": ("/v1/responses", {"input": PROMPT, "max_output_tokens": 200, "ignore_eos": True}),
    "ollama_chat": ("/api/chat", {"messages": MESSAGES, "options": OLLAMA_OPTIONS}),
    "ollama_generate": ("/api/generate", {"prompt": PROMPT, "options": OLLAMA_OPTIONS}),
}
KV_FULL = "the KV cache is full"


@pytest.fixture(scope="module")
def url(store_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with serve(store_root, tmp_path_factory.mktemp("cut-routes"), ctx_size=256, parallel=4) as running:
        yield running.url


async def _four_at_once(url: str, path: str, body: dict[str, Any]) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=url, timeout=180) as client:
        return list(await asyncio.gather(*(client.post(path, json=body) for _ in range(4))))


def _sse(raw: bytes) -> list[tuple[str | None, Any]]:
    """(event name or None, JSON payload or "[DONE]") of every frame, strictly parsed."""
    text = raw.decode("utf-8")
    frames = text.split("\n\n")
    assert frames[-1] == "", "the stream must end with a blank line"
    out: list[tuple[str | None, Any]] = []
    for frame in frames[:-1]:
        event, data = None, None
        for line in frame.split("\n"):
            if line.startswith("event: "):
                event = line[len("event: "):]
            else:
                assert line.startswith("data: "), line[:80]
                data = line[len("data: "):]
        assert data is not None
        out.append((event, data if data == "[DONE]" else json.loads(data)))
    return out


def _ndjson(raw: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in raw.decode("utf-8").splitlines() if line]


def _ollama_whole(last: dict[str, Any]) -> bool:
    """An Ollama answer that ended whole: at num_predict, or at the model's own EOS before it.

    Ollama has no ignore_eos, and a seed does not pin the tokens across CPUs (the kernels' rounding
    moves the sampled path), so random weights may draw EOS early: CI drew it at token 99. A route
    that called a cut answer "stop" would still fail here: 4 x 200 tokens cannot fit 256 cells, so
    no answer would count as cut and `1 <= cut` fails."""
    if last.get("done") is not True:
        return False
    if last["done_reason"] == "length":
        return bool(last["eval_count"] == 200)
    return bool(last["done_reason"] == "stop" and last["eval_count"] < 200)


def _streamed_is_cut(route: str, raw: bytes) -> bool:
    """Whether this stream was cut; asserts that it says so properly, or ends properly if not."""
    if route.startswith("ollama"):
        lines = _ndjson(raw)
        if "error" in lines[-1]:
            assert KV_FULL in lines[-1]["error"]
            assert not any(line.get("done") for line in lines), "a cut answer must never say done"
            return True
        assert _ollama_whole(lines[-1]), lines[-1]
        return False
    frames = _sse(raw)
    names = [event for event, _ in frames]
    last_event, last = frames[-1]
    if route == "completions":
        if last != "[DONE]":
            assert last["error"]["code"] == "cut_short" and KV_FULL in last["error"]["message"]
            assert all(c["finish_reason"] is None for _, p in frames[:-1] for c in p["choices"])
            return True
        assert frames[-2][1]["choices"][0]["finish_reason"] == "length"
        return False
    if route == "anthropic":
        if last_event == "error":
            assert last["error"]["type"] == "overloaded_error" and KV_FULL in last["error"]["message"]
            assert "message_delta" not in names and "message_stop" not in names
            return True
        assert names[-2:] == ["message_delta", "message_stop"], names[-3:]
        assert frames[-2][1]["delta"]["stop_reason"] == "max_tokens"
        return False
    assert route == "responses"
    if last_event == "response.failed":
        assert last["response"]["status"] == "failed"
        assert last["response"]["error"]["code"] == "cut_short"
        assert KV_FULL in last["response"]["error"]["message"]
        assert "response.completed" not in names and "response.incomplete" not in names
        return True
    assert last_event == "response.incomplete", names[-3:]  # max_output_tokens reached: whole
    assert last["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
    return False


def _plain_is_cut(route: str, response: httpx.Response) -> bool:
    """Whether this answer was cut (a 5xx in the route's error shape), or else complete."""
    body = response.json()
    if response.status_code != 200:
        if route == "anthropic":
            assert response.status_code == 529  # Anthropic's "overloaded"
            assert body["error"]["type"] == "overloaded_error" and KV_FULL in body["error"]["message"]
        elif route.startswith("ollama"):
            assert response.status_code == 503 and KV_FULL in body["error"]
        else:
            assert response.status_code == 503 and body["error"]["code"] == "cut_short"
            assert response.headers["retry-after"] == "1"
        return True
    if route == "completions":
        assert body["choices"][0]["finish_reason"] == "length"
        assert body["usage"]["completion_tokens"] == 200
    elif route == "anthropic":
        assert body["stop_reason"] == "max_tokens" and body["usage"]["output_tokens"] == 200
    elif route == "responses":
        assert body["status"] == "incomplete" and body["usage"]["output_tokens"] == 200
    else:
        assert _ollama_whole(body), body
    return False


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "plain"])
@pytest.mark.parametrize("route", list(ROUTES))
def test_kv_cache_full_is_an_error_on_every_route(url: str, route: str, stream: bool) -> None:
    path, body = ROUTES[route]
    responses = asyncio.run(_four_at_once(url, path, {"model": TINY, **body, "stream": stream}))
    cut = 0
    for response in responses:
        if stream:
            assert response.status_code == 200, response.text[:300]
            # random weights emit invalid UTF-8 of their own: U+FFFD is expected here
            cut += _streamed_is_cut(route, response.content.replace("\ufffd".encode(), b"?"))
        else:
            cut += _plain_is_cut(route, response)
    assert 1 <= cut < 4, f"{cut} of 4 answers were cut short"
    with httpx.Client(base_url=url) as client:  # the cut ones released their lease too (RELIABILITY 30)
        assert wait_for(lambda: all(m["active_requests"] == 0 for m in loaded(client).values()), 30)


LONG_OLLAMA = {"options": {"num_predict": 4000, "seed": 7}}
LONG = {"completions": {"max_tokens": 4000}, "anthropic": {"max_tokens": 4000},
        "responses": {"max_output_tokens": 4000}, "ollama_chat": LONG_OLLAMA, "ollama_generate": LONG_OLLAMA}


def _stream_until_closed(url: str, route: str, got: dict[str, bytes], started: threading.Event) -> None:
    path, body = ROUTES[route]
    body = {"model": TINY, **body, **LONG[route], "stream": True}
    raw = b""
    try:
        with httpx.stream("POST", url + path, json=body, timeout=120) as response:
            for chunk in response.iter_bytes():
                raw += chunk
                started.set()
    except httpx.HTTPError:
        pass  # the connection may close after the last frame
    got[route] = raw


def test_shutdown_ends_every_stream_with_an_error(store_root: Path, tmp_path: Path) -> None:
    """SIGTERM mid-answer (RELIABILITY 31): every route's stream ends with its error form, never
    with the frames of a finished answer (test_cut_short.py has the chat route's)."""
    env = {"MR_MODELS_DIR": str(store_root), "MR_HOME": str(tmp_path), "MR_CTX_SIZE": "8192",
           "MR_PORT": str(free_port())}
    url = f"http://127.0.0.1:{env['MR_PORT']}"
    server = start(["--parallel", "8", "--quiet"], env)
    got: dict[str, bytes] = {}
    try:
        wait_healthy(url, server)
        started = {route: threading.Event() for route in ROUTES}
        readers = [threading.Thread(target=_stream_until_closed, args=(url, route, got, started[route]))
                   for route in ROUTES]
        for reader in readers:
            reader.start()
        assert all(event.wait(120) for event in started.values()), "a stream never began"
        os.kill(server.pid, signal.SIGTERM)
        for reader in readers:
            reader.join(120)
    finally:
        if server.poll() is None:
            server.kill()
        server.communicate(timeout=30)
    for route in ROUTES:
        raw = got[route].replace("\ufffd".encode(), b"?")
        if route.startswith("ollama"):
            lines = _ndjson(raw)
            assert "shutting down" in lines[-1]["error"], lines[-1]
            assert not any(line.get("done") for line in lines)
            continue
        frames = _sse(raw)
        names = [event for event, _ in frames]
        last_event, last = frames[-1]
        if route == "completions":
            assert last != "[DONE]" and "shutting down" in last["error"]["message"], frames[-2:]
            assert all(c["finish_reason"] is None for _, p in frames[:-1] for c in p["choices"])
        elif route == "anthropic":
            assert last_event == "error" and "shutting down" in last["error"]["message"], frames[-2:]
            assert "message_stop" not in names and "message_delta" not in names
        else:
            assert last_event == "response.failed", names[-3:]
            assert "shutting down" in last["response"]["error"]["message"]
            assert "response.completed" not in names and "response.incomplete" not in names
