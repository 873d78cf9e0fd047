"""Anthropic Messages and OpenAI Responses: bad input gets a clean 4xx in the route's own envelope,
and the lifecycle is the other routes' (context overflow, queue cap, disconnects, metrics)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import anthropic
import httpx
import pytest

from support.serving import SMOL, TINY, loaded, serve_client, wait_for

MESSAGES = "/v1/messages"
RESPONSES = "/v1/responses"
HI = [{"role": "user", "content": "hi"}]
OK_MESSAGE = {"model": SMOL, "max_tokens": 1, "messages": HI}


def anthropic_error(r: httpx.Response, status: int, kind: str) -> str:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["type"] == "error" and set(body["error"]) == {"type", "message"}, body
    assert body["error"]["type"] == kind, body
    return body["error"]["message"]


def openai_error(r: httpx.Response, status: int) -> dict:
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return error


def healthy(http: httpx.Client) -> None:
    assert http.get("/health").status_code == 200


@pytest.mark.parametrize(("body", "needle"), [
    ({"model": SMOL, "messages": HI}, "max_tokens"),
    ({**OK_MESSAGE, "max_tokens": "ten"}, "max_tokens"),
    ({**OK_MESSAGE, "max_tokens": 0}, "max_tokens"),
    ({**OK_MESSAGE, "messages": "hi"}, "messages"),
    ({**OK_MESSAGE, "messages": []}, "messages"),
    ({**OK_MESSAGE, "messages": [{"role": "system", "content": "x"}]}, "role"),
    ({**OK_MESSAGE, "messages": [{"role": "user", "content": [{"type": "image", "source": {}}]}]}, "type"),
    ({**OK_MESSAGE, "messages": [{"role": "user", "content": [{"type": "hologram"}]}]}, "type"),
    ({**OK_MESSAGE, "messages": [{"role": "user", "content": [{"type": "text"}]}]}, "text"),
    ({**OK_MESSAGE, "temperature": 3}, "temperature"),
    ({**OK_MESSAGE, "stop_sequences": [""]}, "stop_sequences"),
    ({**OK_MESSAGE, "tool_choice": {"type": "any"}}, "tool_choice"),
    ({**OK_MESSAGE, "tool_choice": {"type": "sometimes"}}, "tool_choice"),
    ({**OK_MESSAGE, "tools": [{"name": "f", "input_schema": {}}],
      "tool_choice": {"type": "tool", "name": "g"}}, "tool_choice"),
    ({**OK_MESSAGE, "system": 5}, "system"),
    ({**OK_MESSAGE, "messages": [{"role": "assistant", "content": [
        {"type": "tool_result", "tool_use_id": "x", "content": "y"}]}]}, "tool_result"),
    ({**OK_MESSAGE, "messages": HI * 5000}, "messages"),
])
def test_bad_messages_are_400_in_anthropics_envelope(http: httpx.Client, body: dict, needle: str) -> None:
    message = anthropic_error(http.post(MESSAGES, json=body), 400, "invalid_request_error")
    assert needle in message
    healthy(http)


def test_malformed_json_and_wrong_content_type_on_anthropic_paths(http: httpx.Client) -> None:
    r = http.post(MESSAGES, content=b'{"model": ', headers={"content-type": "application/json"})
    anthropic_error(r, 400, "invalid_request_error")
    r = http.post("/anthropic/v1/messages", content=b"x", headers={"content-type": "text/plain"})
    anthropic_error(r, 415, "invalid_request_error")
    anthropic_error(http.get(MESSAGES), 405, "invalid_request_error")
    healthy(http)


def test_missing_model_for_count_tokens_is_not_found(http: httpx.Client) -> None:
    r = http.post("/v1/messages/count_tokens", json={"model": "ai/none", "messages": HI})
    anthropic_error(r, 404, "not_found_error")


@pytest.mark.parametrize(("body", "param"), [
    ({"model": SMOL}, "input"),
    ({"model": SMOL, "input": 5}, "input"),
    ({"model": SMOL, "input": []}, "input"),
    ({"model": SMOL, "input": [{"role": "wizard", "content": "x"}]}, "input[0].role"),
    ({"model": SMOL, "input": [{"type": "hologram"}]}, "input[0].type"),
    ({"model": SMOL, "input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]},
     "input[0].content[0]"),
    ({"model": SMOL, "input": [{"type": "function_call_output", "output": "x"}]}, "input[0]"),
    ({"model": SMOL, "input": "hi", "max_output_tokens": 0}, "max_output_tokens"),
    ({"model": SMOL, "input": "hi", "temperature": "hot"}, "temperature"),
    ({"model": SMOL, "input": "hi", "tools": [{"type": "web_search"}]}, "tools[0]"),
    ({"model": SMOL, "input": "hi", "tool_choice": "required"}, "tool_choice"),
    ({"model": SMOL, "input": "hi", "text": {"format": {"type": "json_schema", "name": "x"}}},
     "text.format.schema"),
    ({"model": SMOL, "input": [{"role": "user", "content": "hi"}] * 5000}, "input"),
])
def test_bad_responses_requests_are_400_in_openais_envelope(http: httpx.Client, body: dict,
                                                           param: str) -> None:
    error = openai_error(http.post(RESPONSES, json=body), 400)
    assert error["param"] == param or param in error["message"], error
    assert error["type"] == "invalid_request_error"
    healthy(http)


def test_unknown_response_ids_are_404(http: httpx.Client) -> None:
    for r in (http.get("/v1/responses/resp_nope"), http.get("/v1/responses/resp_nope/input_items"),
              http.delete("/v1/responses/resp_nope"), http.get("/responses/resp_nope")):
        assert openai_error(r, 404)["type"] == "invalid_request_error"
    r = http.post(RESPONSES, json={"model": SMOL, "input": "hi", "previous_response_id": "resp_nope"})
    assert openai_error(r, 404)["code"] == "previous_response_not_found"


@pytest.mark.slow
def test_a_prompt_that_does_not_fit_is_400_with_both_counts(http: httpx.Client) -> None:
    long = [{"role": "user", "content": "word " * 4000}]
    message = anthropic_error(http.post(MESSAGES, json={**OK_MESSAGE, "messages": long}), 400,
                              "invalid_request_error")
    assert "2048" in message and any(c.isdigit() for c in message.replace("2048", ""))
    error = openai_error(http.post(RESPONSES, json={"model": SMOL, "input": long}), 400)
    assert error["code"] == "context_length_exceeded" and "2048" in error["message"]
    assert http.post(MESSAGES, json=OK_MESSAGE).status_code == 200


def _busy(http: httpx.Client, name: str) -> tuple[int, int]:
    entry = loaded(http).get(name, {})
    return entry.get("busy_slots", 0), entry.get("active_requests", 0)


COUNT = [{"role": "user", "content": "Count from 1 to 1000, separated by commas."}]
# Long answers whatever this CPU's greedy wording: llama-server's ignore_eos extension.
LONG = {"temperature": 0, "ignore_eos": True}


@pytest.mark.slow
@pytest.mark.parametrize(("path", "body"), [
    (MESSAGES, {"model": SMOL, "max_tokens": 1500, "messages": COUNT, "stream": True, **LONG}),
    (RESPONSES, {"model": SMOL, "max_output_tokens": 1500, "input": COUNT, "stream": True, **LONG}),
])
def test_disconnect_mid_stream_frees_the_slot(http: httpx.Client, path: str, body: dict) -> None:
    with http.stream("POST", path, json=body) as r:
        lines = r.iter_lines()
        for _ in range(20):
            next(lines)
        assert _busy(http, "smollm2") == (1, 1)
    # 1,500 tokens take several seconds; a cancelled request frees its slot within a step (the
    # margin is for a loaded 2-core machine, where noticing the disconnect can take a while)
    assert wait_for(lambda: _busy(http, "smollm2") == (0, 0), 3.0), _busy(http, "smollm2")


@pytest.mark.slow
@pytest.mark.parametrize("path", [MESSAGES, RESPONSES])
def test_disconnect_before_a_non_streamed_answer_frees_the_slot(http: httpx.Client, path: str) -> None:
    body = {"model": SMOL, "max_tokens": 1500, "max_output_tokens": 1500, "messages": COUNT, "input": COUNT,
            **LONG}
    with pytest.raises(httpx.ReadTimeout):
        http.post(path, json=body, timeout=httpx.Timeout(60, read=1.0))
    # 1,500 tokens take several seconds; a cancelled request frees its slot within a step (the
    # margin is for a loaded 2-core machine, where noticing the disconnect can take a while)
    assert wait_for(lambda: _busy(http, "smollm2") == (0, 0), 3.0), _busy(http, "smollm2")


@pytest.fixture(scope="module")
def one_slot(store_root: Path, mr_home: Path) -> Iterator[httpx.Client]:
    with serve_client(store_root, mr_home, parallel=1, max_queue=0) as client:
        yield client


@pytest.mark.slow
def test_queue_cap_is_529_overloaded_for_anthropic_and_503_for_responses(one_slot: httpx.Client) -> None:
    long = {"model": SMOL, "max_tokens": 1500, "messages": COUNT, "stream": True, **LONG}
    with one_slot.stream("POST", MESSAGES, json=long) as r:
        lines = r.iter_lines()
        first = [next(lines), next(lines)]  # message_start's event and data lines
        taken = wait_for(lambda: _busy(one_slot, "smollm2") == (1, 1), 5.0)  # the only slot
        assert taken, (_busy(one_slot, "smollm2"), first)
        refused = one_slot.post(MESSAGES, json=OK_MESSAGE)
        assert refused.headers.get("retry-after"), (refused.status_code, refused.text)
        anthropic_error(refused, 529, "overloaded_error")
        busy = one_slot.post(RESPONSES, json={"model": SMOL, "input": "hi", "max_output_tokens": 1})
        assert openai_error(busy, 503) and busy.headers["retry-after"]
    assert wait_for(lambda: _busy(one_slot, "smollm2") == (0, 0), 5.0)  # the closed stream is cancelled
    sdk = anthropic.Anthropic(base_url=str(one_slot.base_url), api_key="x", max_retries=0)
    assert sdk.messages.create(model=SMOL, max_tokens=1, messages=HI).usage.output_tokens == 1


def test_metrics_count_each_route(one_slot: httpx.Client) -> None:
    one_slot.post(MESSAGES, json={**OK_MESSAGE, "model": TINY})
    one_slot.post(RESPONSES, json={"model": TINY, "input": "hi", "max_output_tokens": 1})
    one_slot.post("/v1/messages/count_tokens", json={"model": TINY, "messages": HI})
    text = one_slot.get("/metrics").text
    for endpoint in ("/v1/messages", "/v1/responses", "/v1/messages/count_tokens"):
        assert f'endpoint="{endpoint}",method="POST",status="200"' in text or \
            f'method="POST",endpoint="{endpoint}",status="200"' in text, endpoint
    assert 'mr_generated_tokens_total{model="tiny"}' in text


def test_the_openapi_schema_lists_the_new_routes(http: httpx.Client) -> None:
    paths = http.get("/schema/openapi.json").json()["paths"]
    for path in ("/v1/messages", "/v1/messages/count_tokens", "/v1/responses", "/v1/responses/{response_id}",
                 "/v1/responses/{response_id}/input_items"):
        assert path in paths, path
    assert "delete" in paths["/v1/responses/{response_id}"]


def test_response_store_bounds(store_root: Path, mr_home: Path) -> None:
    """Entries past the cap push out the oldest; so does the byte cap."""
    with serve_client(store_root, mr_home, responses_max_entries=2) as client:
        bodies = [{"model": TINY, "input": f"hi {i}", "max_output_tokens": 1} for i in range(3)]
        ids = [client.post(RESPONSES, json=body).json()["id"] for body in bodies]
        assert [client.get(f"/v1/responses/{i}").status_code for i in ids] == [404, 200, 200]
