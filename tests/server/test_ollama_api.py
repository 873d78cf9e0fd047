"""Ollama's API with the official `ollama` client: chat, generate, embed, tags, ps, show, version,
keep_alive, NDJSON streaming, errors in Ollama's shape."""

from __future__ import annotations

import json

import httpx
import ollama
import pytest

from support.serving import SMOL, TINY

SMOL_TAG = "ai/smollm2:latest"


@pytest.fixture
def client(base_url: str) -> ollama.Client:
    return ollama.Client(host=base_url, timeout=60)


@pytest.fixture
def det_client(det_url: str) -> ollama.Client:
    """The deterministic server's (conftest.det_url): for greedy answers compared across requests."""
    return ollama.Client(host=det_url, timeout=60)


def test_chat_streamed_and_not(det_client: ollama.Client) -> None:
    messages = [{"role": "user", "content": "Name a color."}]
    options = {"temperature": 0, "num_predict": 10}
    r = det_client.chat(model=SMOL, messages=messages, options=options)
    assert r.done and r.message.role == "assistant" and r.message.content
    assert r.eval_count and r.prompt_eval_count and r.total_duration
    parts = list(det_client.chat(model=SMOL, messages=messages, options=options, stream=True))
    assert parts[-1].done and parts[-1].done_reason in ("stop", "length")
    assert "".join(p.message.content for p in parts) == r.message.content


def test_generate_streamed_and_not_and_raw(det_client: ollama.Client) -> None:
    options = {"temperature": 0, "num_predict": 8, "seed": 1}
    r = det_client.generate(model=SMOL, prompt="Why is the sky blue?", options=options)
    assert r.done and r.response
    joined = "".join(p.response for p in det_client.generate(model=SMOL, prompt="Why is the sky blue?",
                                                         options=options, stream=True))
    assert joined == r.response
    raw = det_client.generate(model=SMOL, prompt="The capital of France is", raw=True, options=options)
    assert raw.response
    system = det_client.generate(model=SMOL, prompt="hi", system="Answer in French.", options=options)
    assert system.response


def test_embed_and_legacy_embeddings(client: ollama.Client) -> None:
    r = client.embed(model=SMOL, input=["hello", "world"])
    assert len(r.embeddings) == 2 and len(r.embeddings[0]) == 576
    assert r.prompt_eval_count >= 2
    one = client.embed(model=SMOL, input="hello", dimensions=16)
    assert len(one.embeddings[0]) == 16
    legacy = client.embeddings(model=SMOL, prompt="hello")
    assert len(legacy.embedding) == 576


def test_tags_show_version(client: ollama.Client) -> None:
    names = [m.model for m in client.list().models]
    assert SMOL_TAG in names and "ai/tiny:latest" in names
    smol = next(m for m in client.list().models if m.model == SMOL_TAG)
    assert smol.size > 0 and smol.details.family == "llama" and smol.details.quantization_level
    shown = client.show(SMOL)
    assert shown.details.family == "llama" and "completion" in shown.capabilities
    assert shown.modelinfo["general.architecture"] == "llama"
    assert "im_start" in shown.template
    assert httpx.get(str(client._client.base_url) + "/api/version").json()["version"]


def test_ps_and_keep_alive(client: ollama.Client) -> None:
    client.generate(model=TINY, prompt="", keep_alive="10m")  # empty prompt: load only
    running = {m.model: m for m in client.ps().models}
    assert "ai/tiny:latest" in running and running["ai/tiny:latest"].context_length == 2048
    r = client.generate(model=TINY, prompt="", keep_alive=0)  # and keep_alive 0 unloads
    assert r.done_reason == "unload"
    assert "ai/tiny:latest" not in {m.model for m in client.ps().models}
    client.chat(model=TINY, messages=[{"role": "user", "content": "x"}], options={"num_predict": 2},
                keep_alive=0)
    assert "ai/tiny:latest" not in {m.model for m in client.ps().models}


def test_errors_use_ollamas_shape(client: ollama.Client, http: httpx.Client) -> None:
    with pytest.raises(ollama.ResponseError) as info:
        client.chat(model="ai/missing", messages=[{"role": "user", "content": "x"}])
    assert info.value.status_code == 404 and "missing" in info.value.error
    r = http.post("/api/chat", json={"model": SMOL, "messages": [{"role": "user", "content": "x"}],
                                     "options": {"temperature": -1}})
    assert r.status_code == 400 and isinstance(r.json()["error"], str)
    with pytest.raises(ollama.ResponseError):
        client.delete("ai/missing")
    with pytest.raises(ollama.ResponseError) as info:
        client.pull("Not A Name")
    assert info.value.status_code == 400


def test_ndjson_stream_lines_are_json(http: httpx.Client) -> None:
    r = http.post("/api/generate", json={"model": SMOL, "prompt": "hello", "options": {"num_predict": 5}})
    assert r.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in r.text.splitlines()]
    assert all(not line["done"] for line in lines[:-1]) and lines[-1]["done"]
    assert lines[-1]["eval_count"] == 5


def test_format_and_tools(client: ollama.Client) -> None:
    schema = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
    r = client.chat(model=SMOL, messages=[{"role": "user", "content": "A JSON object with a cat's name."}],
                    format=schema, options={"temperature": 0, "num_predict": 40})
    assert "name" in json.loads(r.message.content)
    tool = {"type": "function", "function": {"name": "get_weather", "description": "Weather of a city",
                                             "parameters": {**schema, "required": []}}}
    history = [{"role": "user", "content": "Weather in Paris?"},
               {"role": "assistant", "content": "",
                "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
               {"role": "tool", "content": '{"temperature_c": 21}', "tool_name": "get_weather"}]
    r = client.chat(model=SMOL, messages=history, tools=[tool], options={"temperature": 0, "num_predict": 12})
    assert r.message.content or r.message.tool_calls


def test_tool_calls_come_back_with_arguments_as_objects() -> None:
    from mr.engine import ToolCall
    from mr.server.ollama.convert import tool_calls

    calls = tool_calls([ToolCall(id="c1", name="get_weather", arguments='{"city": "Paris"}'),
                        ToolCall(id="c2", name="noop", arguments="")])
    assert calls == [{"function": {"name": "get_weather", "arguments": {"city": "Paris"}}},
                     {"function": {"name": "noop", "arguments": {}}}]
