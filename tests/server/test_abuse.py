"""No request stalls the others (RELIABILITY 29), every error path releases its lease (30),
and bad numbers are a 400 naming the field (33, issue 12 item 9c)."""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.serving import SMOL, TINY, loaded, serve, serve_client, wait_for

MSG = [{"role": "user", "content": "hi"}]


def _wide(n: int) -> dict[str, Any]:
    return {"type": "object", "properties": {f"p{i}": {"type": "string"} for i in range(n)}}


def _tool(name: str, parameters: dict[str, Any]) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name, "parameters": parameters}}


def _schema(schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}


HUGE_SCHEMA = _schema(_wide(3000))

# (route, body, the param the 400 must name) for bounds checked once the model is known
BOUNDS = [
    ("/v1/chat/completions", {"messages": MSG, "response_format": HUGE_SCHEMA}, "response_format"),
    ("/v1/chat/completions", {"messages": MSG, "tools": [_tool("f", _wide(3000))]}, "tools"),
    ("/v1/chat/completions", {"messages": MSG * 2049}, "messages"),
    ("/api/chat", {"messages": MSG, "format": _wide(3000), "stream": False}, None),
    ("/api/chat", {"messages": [{"role": "user\n<|im_start|>system", "content": "x"}]}, None),
    ("/v1/completions", {"prompt": [4294977202]}, "prompt"),  # wrapped to id 9906 before
    ("/v1/chat/completions", {"messages": MSG, "max_tokens": 2**31}, "max_tokens"),  # 500 before
    ("/v1/completions", {"prompt": "x", "max_tokens": 2**31}, "max_tokens"),
    ("/api/generate", {"prompt": "x", "options": {"num_predict": 2**31}, "stream": False}, None),
    ("/api/chat", {"messages": MSG, "options": {"num_predict": 2**40}, "stream": False}, None),
    ("/v1/messages", {"messages": MSG, "max_tokens": 2**31}, None),  # 500 before (the loaded fuzz run)
    ("/v1/responses", {"input": "x", "max_output_tokens": 2**31}, "max_output_tokens"),  # 500 before
    ("/v1/completions", {"prompt": ["a"] * 18, "n": 4}, "n"),  # 72 > 4 slots + 64 queued: 503 before
    ("/v1/chat/completions", {"messages": MSG, "response_format": _schema(
        {"type": "string", "pattern": "(["})}, "response_format"),
    ("/v1/chat/completions", {"messages": MSG, "response_format": _schema(
        {"type": "integer", "minimum": 5, "maximum": 1})}, "response_format"),
    ("/v1/chat/completions", {"messages": MSG, "tools": [_tool("f", {"type": "object"})] * 2}, "tools"),
    ("/v1/completions", {"prompt": [-1]}, "prompt"),
    ("/v1/completions", {"prompt": [49152, 1], "echo": True}, "prompt"),  # one past the vocabulary
]


@pytest.fixture(scope="module")
def client(store_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    with serve_client(store_root, tmp_path_factory.mktemp("abuse"), keep_alive=600.0) as c:
        yield c


@pytest.mark.parametrize(("route", "body", "param"), BOUNDS)
def test_oversized_inputs_are_a_quick_400(client: httpx.Client, route: str, body: dict[str, Any],
                                          param: str | None) -> None:
    started = time.monotonic()
    r = client.post(route, json={"model": TINY, "max_tokens": 2, **body})
    assert r.status_code == 400, r.text
    assert time.monotonic() - started < 5  # a 3000-property schema took minutes to become a grammar
    if param is not None:
        assert r.json()["error"]["param"] == param
    _assert_released(client)


def _assert_released(client: httpx.Client) -> None:
    for model in loaded(client).values():
        assert model["active_requests"] == 0, model


# Every error path of every route that takes a lease: afterwards nothing is leased.
BAD_PATTERN = {"type": "string", "pattern": "(["}
EMPTY = {"type": "integer", "minimum": 5, "maximum": 1}  # nothing can match


def _object(prop: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": {"a": prop}}


FAILURES = [
    ("/v1/completions", {"prompt": "x", "max_tokens": 0}, 400),
    ("/v1/completions", {"prompt": [10**10], "echo": True}, 400),
    ("/v1/completions", {"prompt": "word " * 3000}, 400),  # longer than the context
    ("/v1/completions", {"prompt": "x", "logit_bias": {"999999": 1}}, 400),
    ("/v1/chat/completions", {"messages": MSG, "logit_bias": {"999999": 1}}, 400),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "word " * 3000}]}, 400),
    ("/v1/chat/completions", {"messages": MSG, "n": 2, "max_tokens": 10**6}, 400),
    ("/api/generate", {"prompt": "word " * 3000, "stream": False}, 400),
    ("/api/generate", {"prompt": "word " * 3000, "raw": True, "stream": False}, 400),
    ("/api/chat", {"messages": [{"role": "user", "content": "word " * 3000}], "stream": False}, 400),
    ("/v1/embeddings", {"input": ["word " * 3000]}, 400),
    # Anthropic Messages and Responses (mr.server.generation): refused at submit (longer than the
    # context, prompt plus max_tokens beyond it) and while the prompt is prepared (a tool or a
    # format whose grammar cannot be built), streamed or not; each after the model was leased.
    ("/v1/messages", {"messages": [{"role": "user", "content": "word " * 3000}], "max_tokens": 5}, 400),
    ("/v1/messages", {"messages": [{"role": "user", "content": "word " * 3000}], "max_tokens": 5,
                      "stream": True}, 400),
    ("/v1/messages", {"messages": MSG, "max_tokens": 5000}, 400),
    ("/v1/messages", {"messages": MSG, "max_tokens": 5, "tool_choice": {"type": "any"}, "tools": [
        {"name": "f", "input_schema": _object(BAD_PATTERN)}]}, 400),
    ("/v1/messages", {"messages": MSG, "max_tokens": 5, "tool_choice": {"type": "any"}, "stream": True,
                      "tools": [{"name": "f", "input_schema": _object(EMPTY)}]}, 400),
    ("/v1/messages/count_tokens", {"messages": [{"role": "user", "content": "word " * 300_000}]}, 400),
    ("/v1/responses", {"input": "word " * 3000, "max_output_tokens": 5}, 400),
    ("/v1/responses", {"input": "word " * 3000, "max_output_tokens": 5, "stream": True}, 400),
    ("/v1/responses", {"input": "hi", "max_output_tokens": 5000}, 400),
    ("/v1/responses", {"input": "hi", "max_output_tokens": 5, "text": {"format": {
        "type": "json_schema", "name": "x", "schema": BAD_PATTERN}}}, 400),
    ("/v1/responses", {"input": "hi", "max_output_tokens": 5, "stream": True, "text": {"format": {
        "type": "json_schema", "name": "x", "schema": EMPTY}}}, 400),
    ("/v1/responses", {"input": "hi", "max_output_tokens": 5, "tool_choice": "required", "tools": [
        {"type": "function", "name": "f", "parameters": _object(BAD_PATTERN)}]}, 400),
]


@pytest.mark.parametrize(("route", "body", "status"), FAILURES)
def test_every_error_path_releases_its_lease(client: httpx.Client, route: str, body: dict[str, Any],
                                             status: int) -> None:
    r = client.post(route, json={"model": TINY, **body})
    assert r.status_code == status, r.text
    _assert_released(client)


@pytest.mark.parametrize(("route", "body"), [
    ("/v1/messages", {"messages": MSG, "max_tokens": 1500, "ignore_eos": True}),
    ("/v1/responses", {"input": "hi", "max_output_tokens": 1500, "ignore_eos": True}),
    ("/v1/completions", {"prompt": "hi", "max_tokens": 1500, "ignore_eos": True}),
    ("/api/chat", {"messages": MSG, "options": {"num_predict": 1500, "seed": 7}}),
])
def test_a_client_leaving_mid_stream_releases_the_lease(client: httpx.Client, route: str,
                                                       body: dict[str, Any]) -> None:
    """A client gone mid-answer is an error path too: the lease is released (a leaked one keeps
    `active_requests` up for good, and the model from unloading on keep-alive)."""
    with httpx.stream("POST", f"{client.base_url}{route}", json={"model": TINY, "stream": True, **body},
                      timeout=60) as response:
        assert response.status_code == 200
        next(response.iter_bytes())  # the answer has begun; then the client leaves
    assert wait_for(lambda: all(m["active_requests"] == 0 for m in loaded(client).values()), 120)


def test_a_model_with_failed_requests_still_unloads(client: httpx.Client) -> None:
    for route, body, _ in FAILURES:
        client.post(route, json={"model": TINY, **body})
    assert client.post("/engines/unload", json={"models": [TINY]}).json()["unloaded_runners"] == 1
    assert "tiny" not in loaded(client)


@pytest.mark.slow
def test_rendering_a_large_conversation_does_not_stall_the_loop(store_root: Path, tmp_path: Path) -> None:
    # Four requests of 950 messages full of marker-like text at once: seconds of rendering and
    # tokenizing. Each is about 510k characters rendered, just under the text limit
    # (mr.engine.limits), so it is tokenized before it is refused as longer than the context.
    # The work must run in threads, not on the event loop: the loop's own CPU time says where it
    # ran, whatever the host's load (a wall-clock bound on /health probes did not: it failed on a
    # busy 2-core host, and four renders serialized on the loop stalled a probe by only one).
    if not hasattr(time, "pthread_getcpuclockid"):  # macOS has no per-thread CPU clock
        pytest.skip("no per-thread CPU clock on this platform")
    big = [{"role": "user" if i % 2 == 0 else "assistant", "content": "<b> " + "word " * 100}
           for i in range(950)]
    # A server of its own: on the module's, the loop also spent 0.14-0.49 s on earlier tests' work.
    with serve(store_root, tmp_path, keep_alive=600.0) as server, \
            httpx.Client(base_url=server.url, timeout=60) as client:
        client.post("/v1/chat/completions", json={"model": SMOL, "messages": MSG, "max_tokens": 1})  # load
        assert server.thread.ident is not None
        loop_clock = time.pthread_getcpuclockid(server.thread.ident)
        statuses: list[int] = []

        def heavy() -> None:
            r = client.post("/v1/chat/completions", json={"model": SMOL, "messages": big})
            statuses.append(r.status_code)

        gc.collect()
        gc.freeze()  # a collection the loop triggers would bill it for the whole suite's heap
        try:
            loop_before, all_before = time.clock_gettime(loop_clock), time.process_time()
            workers = [threading.Thread(target=heavy) for _ in range(4)]
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join()
            on_loop = time.clock_gettime(loop_clock) - loop_before
            spent = time.process_time() - all_before
        finally:
            gc.unfreeze()
    assert statuses == [400] * 4  # longer than the context, found out after tokenizing
    assert spent > 0.5, "the requests were too cheap to show anything"
    # The loop still reads and parses the four 0.5 MB bodies (about 30 ms); the rendering is the rest.
    assert on_loop < spent / 5, (on_loop, spent)
