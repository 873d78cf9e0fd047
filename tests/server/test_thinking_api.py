"""Thinking control end to end: a small reasoning template (tests/data/think.jinja opens a <think>
block unless enable_thinking is false) on the tiny random model, through each API's own fields."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from support.serving import serve_client

THINK = "ai/tiny-think"
TEMPLATE = Path(__file__).parents[1] / "data" / "think.jinja"


@pytest.fixture(scope="module")
def tc(tmp_path_factory: pytest.TempPathFactory, tiny_gguf: Path) -> Iterator[httpx.Client]:
    from mr.store import Store, package_gguf

    root = tmp_path_factory.mktemp("think-store")
    package_gguf(Store(root), tiny_gguf, THINK, chat_template=TEMPLATE)
    with serve_client(root, tmp_path_factory.mktemp("think-home")) as client:
        yield client


def chat(client: httpx.Client, max_tokens: int = 16, **extra: object) -> dict:
    body = {"model": THINK, "messages": [{"role": "user", "content": "hi"}], "max_tokens": max_tokens,
            "temperature": 0, **extra}
    r = client.post("/v1/chat/completions", json=body)
    assert r.status_code == 200, r.text
    return r.json()["choices"][0]["message"]


def n_tokens(client: httpx.Client, text: str) -> int:
    return len(client.post("/tokenize", json={"model": THINK, "content": text}).json()["tokens"])


def test_reasoning_is_separated_from_content(tc: httpx.Client) -> None:
    message = chat(tc)
    assert message["reasoning_content"]  # everything after the opened <think> is reasoning
    assert not message["content"]


@pytest.mark.parametrize("switch", [{"reasoning_effort": "none"}, {"reasoning_effort": "minimal"},
                                    {"chat_template_kwargs": {"enable_thinking": False}}])
def test_thinking_switched_off(tc: httpx.Client, switch: dict) -> None:
    message = chat(tc, **switch)
    assert message["content"]
    assert not message.get("reasoning_content")


def test_budget_caps_reasoning_tokens(tc: httpx.Client) -> None:
    free = chat(tc, max_tokens=24)
    assert n_tokens(tc, free["reasoning_content"]) > 8
    for field in ("thinking_budget_tokens", "reasoning_budget_tokens"):
        capped = chat(tc, max_tokens=24, **{field: 4})
        assert capped["reasoning_content"] and n_tokens(tc, capped["reasoning_content"]) <= 6
        assert capped["content"]  # the end tag was forced, the answer followed


def test_openai_sdk_fields(tc: httpx.Client) -> None:
    import openai

    client = openai.OpenAI(base_url=f"{tc.base_url}/v1", api_key="unused", max_retries=0)
    messages = [{"role": "user", "content": "hi"}]
    off = client.chat.completions.create(model=THINK, messages=messages, max_tokens=8, temperature=0,
                                         reasoning_effort="none")  # type: ignore[arg-type]
    assert off.choices[0].message.content
    on = client.chat.completions.create(model=THINK, messages=messages, max_tokens=8, temperature=0,
                                        extra_body={"chat_template_kwargs": {"enable_thinking": True}})
    assert not on.choices[0].message.content
    assert getattr(on.choices[0].message, "reasoning_content", None)


def test_ollama_think(tc: httpx.Client) -> None:
    base = {"model": THINK, "messages": [{"role": "user", "content": "hi"}], "stream": False,
            "options": {"temperature": 0, "num_predict": 12}}
    on = tc.post("/api/chat", json={**base, "think": True}).json()["message"]
    assert on.get("thinking") and not on["content"]
    off = tc.post("/api/chat", json={**base, "think": False}).json()["message"]
    assert off["content"] and not off.get("thinking")
    with tc.stream("POST", "/api/chat", json={**base, "stream": True, "think": "high"}) as r:
        lines = [json.loads(line) for line in r.iter_lines() if line.strip()]
    assert any(line.get("message", {}).get("thinking") for line in lines)
    assert tc.post("/api/chat", json={**base, "think": "extreme"}).status_code == 400


def test_configured_default_and_request_override(tc: httpx.Client) -> None:
    assert tc.post("/engines/configure", json={"model": THINK, "think": "off"}).json()["think"] is False
    try:
        assert chat(tc)["content"] and not chat(tc).get("reasoning_content")
        assert chat(tc, reasoning_effort="high")["reasoning_content"]  # the request wins
        messages = [{"role": "user", "content": "x"}]
        prompt = tc.post("/apply-template", json={"model": THINK, "messages": messages})
        assert prompt.json()["prompt"].endswith("</think>\n\n")
    finally:
        tc.post("/engines/configure", json={"model": THINK, "think": "on"})
    assert chat(tc)["reasoning_content"]


def test_bad_thinking_fields_are_400(tc: httpx.Client) -> None:
    body = {"model": THINK, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    for extra in ({"reasoning_effort": "extreme"}, {"chat_template_kwargs": {"enable_thinking": "yes"}},
                  {"chat_template_kwargs": "nope"}, {"thinking_budget_tokens": -5}):
        r = tc.post("/v1/chat/completions", json={**body, **extra})
        assert r.status_code == 400, (extra, r.text)
    assert tc.post("/engines/configure", json={"model": THINK, "think": "maybe"}).status_code == 400


def test_anthropic_thinking(tc: httpx.Client) -> None:
    import anthropic

    client = anthropic.Anthropic(base_url=str(tc.base_url), api_key="unused", max_retries=0)
    ask = dict(model=THINK, max_tokens=24, messages=[{"role": "user", "content": "hi"}],
               extra_body={"temperature": 0})  # this SDK version has no temperature argument
    default = client.messages.create(**ask)  # the template's own default: it thinks
    assert [b.type for b in default.content][:1] == ["thinking"] and default.content[0].thinking
    off = client.messages.create(thinking={"type": "disabled"}, **ask)
    assert [b.type for b in off.content] == ["text"] and off.content[0].text
    capped = client.messages.create(thinking={"type": "enabled", "budget_tokens": 4}, **ask)
    kinds = [b.type for b in capped.content]
    assert kinds == ["thinking", "text"], kinds  # the budget closed the block, the answer followed
    assert n_tokens(tc, capped.content[0].thinking) <= 6
    counted = client.messages.count_tokens(model=THINK, messages=ask["messages"],
                                           thinking={"type": "disabled"})
    def prompt(usage: anthropic.types.Usage) -> int:  # Anthropic counts cache reads apart
        return usage.input_tokens + (usage.cache_read_input_tokens or 0)

    assert counted.input_tokens == prompt(off.usage) != prompt(default.usage)


def test_responses_reasoning_effort(tc: httpx.Client) -> None:
    import openai

    client = openai.OpenAI(base_url=f"{tc.base_url}/v1", api_key="unused", max_retries=0)
    ask = dict(model=THINK, input="hi", max_output_tokens=16, temperature=0, store=False)
    thought = client.responses.create(**ask)
    assert [item.type for item in thought.output][:1] == ["reasoning"]
    plain = client.responses.create(reasoning={"effort": "none"}, **ask)
    assert [item.type for item in plain.output] == ["message"] and plain.output_text
    bad = tc.post("/v1/responses", json={"model": THINK, "input": "hi", "reasoning": {"effort": "huge"}})
    assert bad.status_code == 400 and "reasoning.effort" in bad.text
