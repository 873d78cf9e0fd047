"""Text to tokenize is bounded on every route (issue 29, finding 7).

llama.cpp's tokenizer splits a text at each special-token text in it, and that split was quadratic
in their number: a few megabytes of "<|im_start|>" kept a core busy for minutes, on after the
client had left, and /tokenize built its pieces on the event loop, stalling every other client.
Now text beyond mr.engine.limits.MAX_TEXT_CHARS is a quick 400 naming the limit on each route that
tokenizes client text; text up to it tokenizes quickly even in that worst case
(vendor/patches/0007-*); and /tokenize does all of its work off the event loop.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import msgspec
import pytest

from mr.engine.limits import MAX_REQUEST_CHARS, MAX_TEXT_CHARS
from support.serving import TINY

UNIT = "hello wörld 🦀 <|im_start|> "  # the reported worst case: a special-token text every 27 characters
LIMIT_TEXT = f"{MAX_TEXT_CHARS:,}"
# Generous for a loaded 2-core machine: at the limit the worst case takes well under a second there
# (see the report of issue 29); before the fix it took minutes.
QUICK_S = 8.0
RESPONSIVE_S = 0.25  # the slowest /health round trip another client sees meanwhile (0.5 s and more
# when /tokenize built its pieces on the event loop; under 0.1 s measured since)


def worst_case(n_chars: int) -> str:
    return (UNIT * (n_chars // len(UNIT) + 1))[:n_chars]


class Prober:
    """GET /health from another client, over and over, recording each round trip."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.trips: list[tuple[int, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(base_url=self.base_url, timeout=60) as client:
            while not self._stop.is_set():
                started = time.monotonic()
                status = client.get("/health").status_code
                self.trips.append((status, time.monotonic() - started))
                time.sleep(0.02)

    @contextmanager
    def running(self) -> Iterator[Prober]:
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join(timeout=60)


def timed(base_url: str, path: str, body: dict[str, Any]) -> tuple[httpx.Response, float, float]:
    """(the response to POST `path`, its seconds, the slowest /health round trip meanwhile)."""
    raw = msgspec.json.encode(body)  # encoded up front: the test's own work is not measured
    with httpx.Client(base_url=base_url, timeout=60) as client:
        client.get("/health")
        with Prober(base_url).running() as prober:
            time.sleep(0.1)
            started = time.monotonic()
            response = client.post(path, content=raw, headers={"content-type": "application/json"})
            elapsed = time.monotonic() - started
    assert prober.trips and all(status == 200 for status, _ in prober.trips)
    return response, elapsed, max(seconds for _, seconds in prober.trips)


@pytest.mark.parametrize("with_pieces", [False, True])
def test_worst_case_text_beyond_the_limit_is_a_quick_clear_400(base_url: str, with_pieces: bool) -> None:
    content = worst_case(4 * MAX_TEXT_CHARS)  # 5 MB of JSON: under the body limit
    response, elapsed, slowest = timed(base_url, "/tokenize",
                                       {"model": TINY, "content": content, "with_pieces": with_pieces})
    assert response.status_code == 400, response.text[:300]
    error = response.json()["error"]
    assert error["param"] == "content"
    assert LIMIT_TEXT in error["message"] and f"{len(content):,}" in error["message"]
    assert elapsed < QUICK_S
    assert slowest < RESPONSIVE_S


@pytest.mark.parametrize("with_pieces", [False, True])
def test_worst_case_text_at_the_limit_tokenizes_quickly_off_the_event_loop(
        base_url: str, http: httpx.Client, with_pieces: bool) -> None:
    (special,) = http.post("/tokenize", json={"model": TINY, "content": "<|im_start|>"}).json()["tokens"]
    content = worst_case(MAX_TEXT_CHARS)
    response, elapsed, slowest = timed(base_url, "/tokenize",
                                       {"model": TINY, "content": content, "with_pieces": with_pieces})
    assert response.status_code == 200, response.text[:300]
    tokens = response.json()["tokens"]
    ids = [t["id"] for t in tokens] if with_pieces else tokens
    assert ids.count(special) == content.count("<|im_start|>")  # each one token, none lost
    if with_pieces:
        text = b"".join(p.encode() if isinstance(p, str) else bytes(p) for p in (t["piece"] for t in tokens))
        assert text == content.encode()
    assert elapsed < QUICK_S
    assert slowest < RESPONSIVE_S


def test_normal_tokenizing_is_unchanged(http: httpx.Client) -> None:
    text = "Hello, world! Ünïcödé 🦀"
    tokens = http.post("/tokenize", json={"model": TINY, "content": text}).json()["tokens"]
    assert http.post("/detokenize", json={"model": TINY, "tokens": tokens}).json()["content"] == text
    body = {"model": TINY, "content": f"<|im_start|>{text}", "with_pieces": True}
    marked = http.post("/tokenize", json=body).json()["tokens"]
    assert marked[0]["piece"] == "<|im_start|>" and [p["id"] for p in marked[1:]] == tokens


def _messages(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


# (path, body with TEXT where the client's text goes): every route that tokenizes client text
ROUTES = {
    "completions": ("/v1/completions", {"prompt": "TEXT", "max_tokens": 1}),
    "chat": ("/v1/chat/completions", {"messages": "MESSAGES", "max_tokens": 1}),
    "anthropic": ("/v1/messages", {"messages": "MESSAGES", "max_tokens": 1}),
    "anthropic_count": ("/v1/messages/count_tokens", {"messages": "MESSAGES"}),
    "responses": ("/v1/responses", {"input": "TEXT", "max_output_tokens": 16}),
    "embeddings": ("/v1/embeddings", {"input": ["short", "TEXT"]}),
    "ollama_generate": ("/api/generate", {"prompt": "TEXT", "raw": True, "stream": False}),
    "ollama_chat": ("/api/chat", {"messages": "MESSAGES", "stream": False}),
    "ollama_embed": ("/api/embed", {"input": "TEXT"}),
}


def _filled(value: Any, text: str) -> Any:
    if value == "TEXT":
        return text
    if value == "MESSAGES":
        return _messages(text)
    if isinstance(value, list):
        return [_filled(v, text) for v in value]
    return value


@pytest.mark.parametrize("route", list(ROUTES))
def test_every_route_that_tokenizes_refuses_text_beyond_the_limit(base_url: str, route: str) -> None:
    path, template = ROUTES[route]
    text = worst_case(MAX_TEXT_CHARS + 1)
    body = {"model": TINY, **{k: _filled(v, text) for k, v in template.items()}}
    response, elapsed, slowest = timed(base_url, path, body)
    assert response.status_code == 400, response.text[:300]
    assert LIMIT_TEXT in response.text
    assert elapsed < QUICK_S
    assert slowest < RESPONSIVE_S


@pytest.mark.parametrize(("path", "field"), [("/v1/embeddings", "input"), ("/v1/completions", "prompt"),
                                             ("/api/embed", "input")])
def test_the_texts_of_one_request_are_bounded_together(base_url: str, path: str, field: str) -> None:
    texts = [worst_case(MAX_TEXT_CHARS)] * (MAX_REQUEST_CHARS // MAX_TEXT_CHARS + 1)  # each within its limit
    response, elapsed, slowest = timed(base_url, path, {"model": TINY, field: texts, "max_tokens": 1})
    assert response.status_code == 400, response.text[:300]
    assert f"{MAX_REQUEST_CHARS:,}" in response.text
    assert elapsed < QUICK_S
    assert slowest < RESPONSIVE_S
