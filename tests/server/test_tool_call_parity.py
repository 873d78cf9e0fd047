"""The same tool call through every API, each with its official client: the same calls back.

Every API reaches the engine through one path (mr.server.generation) and one tool rule. Before
that, the same forced call came back once from OpenAI chat, four times from Anthropic Messages and
the Responses API at max_tokens 300 (several calls were allowed there by default, and a small model
repeats the call up to the cap), and at max_tokens 60 as the raw call JSON in a text block. The
greedy answers are compared with each other on the deterministic server, never with fixed wording.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import anthropic
import ollama
import openai
import pytest

from conftest import SMOL

pytestmark = pytest.mark.slow

NAME = "get_weather"
DESCRIPTION = "Get the current weather in a given location"
SCHEMA = {"type": "object", "required": ["location"],
          "properties": {"location": {"type": "string", "description": "The city and state"}}}
ASK = "What is the weather in Paris?"
USER = {"role": "user", "content": ASK}
OPENAI_TOOL = {"type": "function",
               "function": {"name": NAME, "description": DESCRIPTION, "parameters": SCHEMA}}
ANTHROPIC_TOOL = {"name": NAME, "description": DESCRIPTION, "input_schema": SCHEMA}
RESPONSES_TOOL = {"type": "function", "name": NAME, "description": DESCRIPTION, "parameters": SCHEMA}

# Unforced, the model must choose to call (Ollama's API has no tool_choice, so it is compared in
# this form): a system prompt asks it to, and an earlier turn shows a call and its result, written
# in each API's own shape.
SYSTEM = "Always answer weather questions by calling get_weather."
EARLIER = ("What is the weather in London?", {"location": "London"}, "Rain, 12 C", "It is raining in London.")

Call = tuple[str, dict[str, Any]]  # (name, parsed arguments)
Ask = Callable[[dict[str, Any], int], list[Call]]


def _openai_history() -> list[dict[str, Any]]:
    question, args, result, answer = EARLIER
    call = {"id": "call_1", "type": "function", "function": {"name": NAME, "arguments": json.dumps(args)}}
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question},
            {"role": "assistant", "content": "", "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "call_1", "content": result},
            {"role": "assistant", "content": answer}, USER]


def _anthropic_history() -> list[dict[str, Any]]:
    question, args, result, answer = EARLIER
    use = {"type": "tool_use", "id": "toolu_1", "name": NAME, "input": args}
    return [{"role": "user", "content": question}, {"role": "assistant", "content": [use]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1",
                                          "content": result}]},
            {"role": "assistant", "content": answer}, USER]


def _responses_history() -> list[dict[str, Any]]:
    question, args, result, answer = EARLIER
    return [{"role": "user", "content": question},
            {"type": "function_call", "call_id": "call_1", "name": NAME, "arguments": json.dumps(args)},
            {"type": "function_call_output", "call_id": "call_1", "output": result},
            {"role": "assistant", "content": answer}, USER]


def _ollama_history() -> list[dict[str, Any]]:
    question, args, result, answer = EARLIER
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question},
            {"role": "assistant", "content": "",
             "tool_calls": [{"function": {"name": NAME, "arguments": args}}]},
            {"role": "tool", "content": result, "tool_name": NAME},
            {"role": "assistant", "content": answer}, USER]


@pytest.fixture
def clients(det_url: str) -> dict[str, Any]:
    return {"openai": openai.OpenAI(base_url=f"{det_url}/v1", api_key="unused", max_retries=0, timeout=120),
            "anthropic": anthropic.Anthropic(base_url=det_url, api_key="unused", max_retries=0, timeout=120),
            "ollama": ollama.Client(host=det_url, timeout=120)}


def _openai_chat(c: dict[str, Any], limit: int, choice: Any) -> list[Call]:
    """`choice` None: unforced, after the earlier turn."""
    extra = {"tool_choice": choice} if choice is not None else {}
    messages = [USER] if choice is not None else _openai_history()
    r = c["openai"].chat.completions.create(model=SMOL, messages=messages, tools=[OPENAI_TOOL],
                                            max_tokens=limit, temperature=0, **extra)
    calls = r.choices[0].message.tool_calls or []
    return [(t.function.name, json.loads(t.function.arguments)) for t in calls]


def _openai_chat_streamed(c: dict[str, Any], limit: int, choice: Any) -> list[Call]:
    chunks = c["openai"].chat.completions.create(model=SMOL, messages=[USER], tools=[OPENAI_TOOL],
                                                 tool_choice=choice, max_tokens=limit, temperature=0,
                                                 stream=True)
    calls: dict[int, list[str]] = {}
    for chunk in chunks:
        for d in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            name, args = calls.setdefault(d.index, ["", ""])
            calls[d.index] = [name + (d.function.name or ""), args + (d.function.arguments or "")]
    return [(name, json.loads(args)) for name, args in calls.values()]


def _anthropic(c: dict[str, Any], limit: int, choice: Any) -> list[Call]:
    extra = {"tool_choice": choice, "messages": [USER]} if choice is not None else \
        {"system": SYSTEM, "messages": _anthropic_history()}
    m = c["anthropic"].messages.create(model=SMOL, max_tokens=limit, tools=[ANTHROPIC_TOOL],
                                       extra_body={"temperature": 0}, **extra)
    return [(b.name, b.input) for b in m.content if b.type == "tool_use"]


def _anthropic_streamed(c: dict[str, Any], limit: int, choice: Any) -> list[Call]:
    with c["anthropic"].messages.stream(model=SMOL, max_tokens=limit, tools=[ANTHROPIC_TOOL],
                                        tool_choice=choice, messages=[USER],
                                        extra_body={"temperature": 0}) as stream:
        m = stream.get_final_message()
    return [(b.name, b.input) for b in m.content if b.type == "tool_use"]


def _responses(c: dict[str, Any], limit: int, choice: Any) -> list[Call]:
    extra = {"tool_choice": choice, "input": ASK} if choice is not None else \
        {"instructions": SYSTEM, "input": _responses_history()}
    r = c["openai"].responses.create(model=SMOL, tools=[RESPONSES_TOOL], max_output_tokens=limit,
                                     temperature=0, **extra)
    return [(item.name, json.loads(item.arguments)) for item in r.output if item.type == "function_call"]


def _ollama(c: dict[str, Any], limit: int) -> list[Call]:
    r = c["ollama"].chat(model=SMOL, tools=[OPENAI_TOOL], messages=_ollama_history(),
                         options={"temperature": 0, "num_predict": limit})
    return [(t.function.name, dict(t.function.arguments)) for t in r.message.tool_calls or []]


NAMED = {"type": "function", "function": {"name": NAME}}
FORCED: dict[str, Ask] = {
    "openai chat, required": lambda c, n: _openai_chat(c, n, "required"),
    "openai chat, named": lambda c, n: _openai_chat(c, n, NAMED),
    "openai chat, named, streamed": lambda c, n: _openai_chat_streamed(c, n, NAMED),
    "anthropic, tool": lambda c, n: _anthropic(c, n, {"type": "tool", "name": NAME}),
    "anthropic, any": lambda c, n: _anthropic(c, n, {"type": "any"}),
    "anthropic, any, streamed": lambda c, n: _anthropic_streamed(c, n, {"type": "any"}),
    "responses, required": lambda c, n: _responses(c, n, "required"),
    "responses, named": lambda c, n: _responses(c, n, {"type": "function", "name": NAME}),
}
CHOSEN: dict[str, Ask] = {
    "openai chat": lambda c, n: _openai_chat(c, n, None),
    "anthropic": lambda c, n: _anthropic(c, n, None),
    "responses": lambda c, n: _responses(c, n, None),
    "ollama chat": _ollama,
}


def _same_single_call(answers: dict[str, list[Call]]) -> None:
    first = next(iter(answers.values()))
    assert all(len(calls) == 1 for calls in answers.values()), answers
    assert all(calls == first for calls in answers.values()), answers
    [(name, arguments)] = first
    assert name == NAME and isinstance(arguments.get("location"), str), answers


@pytest.mark.parametrize("limit", [60, 300])
def test_a_forced_call_is_one_and_the_same_through_every_api(clients: dict[str, Any], limit: int) -> None:
    _same_single_call({label: ask(clients, limit) for label, ask in FORCED.items()})


@pytest.mark.parametrize("limit", [60, 300])
def test_a_chosen_call_is_one_and_the_same_through_every_api(clients: dict[str, Any], limit: int) -> None:
    _same_single_call({label: ask(clients, limit) for label, ask in CHOSEN.items()})


def test_parallel_calls_follow_the_request_the_same_way_in_every_api(clients: dict[str, Any]) -> None:
    """Several calls only where the request asks for them; the cap is the same everywhere."""
    chat = clients["openai"].chat.completions.create(
        model=SMOL, messages=[USER], tools=[OPENAI_TOOL], tool_choice="required", parallel_tool_calls=True,
        max_tokens=300, temperature=0).choices[0].message.tool_calls
    many = [(t.function.name, json.loads(t.function.arguments)) for t in chat]
    ant = _anthropic(clients, 300, {"type": "any", "disable_parallel_tool_use": False})
    resp = clients["openai"].responses.create(model=SMOL, input=ASK, tools=[RESPONSES_TOOL],
                                              tool_choice="required", parallel_tool_calls=True,
                                              max_output_tokens=300, temperature=0)
    assert ant == many == [(i.name, json.loads(i.arguments)) for i in resp.output
                           if i.type == "function_call"]
    assert 1 <= len(many) <= 4 and resp.parallel_tool_calls is True
    unsaid = clients["openai"].responses.create(model=SMOL, input="Hi", max_output_tokens=16)
    assert unsaid.parallel_tool_calls is False  # the Response object says what was applied
