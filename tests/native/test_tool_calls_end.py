"""`tool_choice: "required"` on a template without tool support (SmolLM2, the generic format):
the forced call ends, parses and finishes as tool_calls, even when the tool's schema leaves
strings, arrays or the whole argument object open-ended (issue 12 item 4)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mr.engine import ChatOptions, SamplingOptions
from mr.engine.tools import MAX_ARG_ITEMS, MAX_ARG_STRING, bounded

OPEN_ARRAY = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather of a city",
    "parameters": {"type": "object", "properties": {
        "city": {"type": "string"}, "days": {"type": "array", "items": {"type": "string"}}}}}}
FREE_FORM = {"type": "function",
             "function": {"name": "get_weather", "description": "Current weather of a city"}}
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]


def test_open_ended_schemas_get_bounds() -> None:
    schema = bounded({"type": "object", "properties": {
        "s": {"type": "string"}, "e": {"type": "string", "enum": ["a"]},
        "n": {"type": "string", "maxLength": 3},
        "a": {"type": "array", "items": {"type": "string"}}, "o": {"type": "object"}}})
    props = schema["properties"]
    assert props["s"]["maxLength"] == MAX_ARG_STRING and "maxLength" not in props["e"]
    assert props["n"]["maxLength"] == 3
    assert props["a"]["maxItems"] == MAX_ARG_ITEMS and props["a"]["items"]["maxLength"] == MAX_ARG_STRING
    assert "anyOf" in props["o"]["additionalProperties"]


@pytest.mark.slow
@pytest.mark.parametrize("tool", [OPEN_ARRAY, FREE_FORM], ids=["open-array", "free-form"])
@pytest.mark.parametrize(("temperature", "seed"), [(0.0, 0), (1.0, 0), (1.0, 3)])
def test_a_forced_call_ends_and_parses(smollm2, tool: dict[str, Any], temperature: float, seed: int) -> None:
    # Before: greedy filled the open array with dates until max_tokens and the raw JSON came
    # back as content with finish_reason "length".
    stream = smollm2.chat(ASK, SamplingOptions(temperature=temperature, seed=seed), max_tokens=700,
                          options=ChatOptions(tools=[tool], tool_choice="required"))
    message = stream.collect()
    assert stream.finish_reason == "tool_calls", message.content[-200:]
    assert message.content == "" and len(message.tool_calls) == 1  # parallel calls not asked for
    call = message.tool_calls[0]
    assert call.name == "get_weather" and isinstance(json.loads(call.arguments), dict)
