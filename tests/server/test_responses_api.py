"""OpenAI's Responses API driven by the official `openai` SDK's `client.responses`."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import openai
import pytest

from support.serving import SMOL, serve

pytestmark = pytest.mark.slow

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Current weather of a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
ASK_WEATHER = [{"role": "user", "content": "What is the weather in Paris?"}]


def test_plain_text_response(oai: openai.OpenAI) -> None:
    r = oai.responses.create(model=SMOL, input="Name three colors.", max_output_tokens=16, temperature=0)
    assert r.object == "response" and r.id.startswith("resp_") and r.model == SMOL
    assert r.status in ("completed", "incomplete")
    [item] = r.output
    assert item.type == "message" and item.role == "assistant"
    assert r.output_text and item.content[0].text == r.output_text
    assert r.usage.input_tokens > 0 and 0 < r.usage.output_tokens <= 16
    assert r.usage.total_tokens == r.usage.input_tokens + r.usage.output_tokens
    assert r.usage.input_tokens_details.cached_tokens >= 0


def test_max_output_tokens_makes_it_incomplete(oai: openai.OpenAI) -> None:
    r = oai.responses.create(model=SMOL, input="Write a long story about a dragon.", max_output_tokens=3,
                             temperature=0)
    assert r.status == "incomplete" and r.incomplete_details.reason == "max_output_tokens"
    assert r.usage.output_tokens == 3


def test_streamed_events_in_order_with_increasing_sequence_numbers(det_oai: openai.OpenAI) -> None:
    args = dict(model=SMOL, input="Name three colors.", max_output_tokens=24, temperature=0)
    whole = det_oai.responses.create(**args)
    events = list(det_oai.responses.create(stream=True, **args))
    kinds = [e.type for e in events]
    assert kinds[:4] == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.content_part.added"]
    assert kinds[-4:] == ["response.output_text.done", "response.content_part.done",
                          "response.output_item.done", "response.completed" if whole.status == "completed"
                          else "response.incomplete"]
    assert set(kinds[4:-4]) == {"response.output_text.delta"}
    assert [e.sequence_number for e in events] == list(range(len(events)))
    joined = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert joined == whole.output_text
    final = events[-1].response
    assert final.output_text == joined and final.usage.output_tokens == whole.usage.output_tokens
    assert det_oai.responses.retrieve(final.id).output_text == joined  # stored when streamed too


def test_instructions_are_the_system_prompt(oai: openai.OpenAI) -> None:
    short = oai.responses.create(model=SMOL, input="Hi", instructions="Be brief.",
                                 max_output_tokens=1)
    long = oai.responses.create(model=SMOL, input="Hi", max_output_tokens=1,
                                instructions="You are a pirate. Answer in pirate speech, with sea words.")
    assert long.instructions.startswith("You are a pirate")
    assert long.usage.input_tokens > short.usage.input_tokens


def test_forced_function_call(oai: openai.OpenAI) -> None:
    r = oai.responses.create(model=SMOL, input=ASK_WEATHER, tools=[WEATHER], max_output_tokens=128,
                             tool_choice={"type": "function", "name": "get_weather"},
                             parallel_tool_calls=False, temperature=0)
    [call] = [item for item in r.output if item.type == "function_call"]
    assert call.name == "get_weather" and call.call_id and call.status == "completed"
    jsonschema.validate(json.loads(call.arguments), WEATHER["parameters"])


def test_forced_function_call_streamed(oai: openai.OpenAI) -> None:
    events = list(oai.responses.create(model=SMOL, input=ASK_WEATHER, tools=[WEATHER], stream=True,
                                       tool_choice="required", max_output_tokens=128,
                                       parallel_tool_calls=False, temperature=0))
    kinds = [e.type for e in events]
    assert "response.function_call_arguments.delta" in kinds
    [done] = [e for e in events if e.type == "response.function_call_arguments.done"]
    jsonschema.validate(json.loads(done.arguments), WEATHER["parameters"])
    assert [item.type for item in events[-1].response.output] == ["function_call"]


def test_function_call_output_follow_up_through_previous_response_id(oai: openai.OpenAI) -> None:
    first = oai.responses.create(model=SMOL, input=ASK_WEATHER, tools=[WEATHER], max_output_tokens=128,
                                 tool_choice="required", parallel_tool_calls=False, temperature=0)
    [call] = [item for item in first.output if item.type == "function_call"]
    result = [{"type": "function_call_output", "call_id": call.call_id,
               "output": "Sunny, 24 degrees Celsius"}]
    second = oai.responses.create(model=SMOL, previous_response_id=first.id, input=result, tools=[WEATHER],
                                  max_output_tokens=24, temperature=0)
    assert second.previous_response_id == first.id
    assert second.output_text
    # The earlier input and output were prepended: the prompt holds more than the new item.
    alone = oai.responses.create(model=SMOL, input="Sunny, 24 degrees Celsius", max_output_tokens=1)
    assert second.usage.input_tokens > first.usage.input_tokens > alone.usage.input_tokens
    # ... and the same conversation, written out in full, renders the same prompt.
    replay = [*ASK_WEATHER, {"type": "function_call", "call_id": call.call_id, "name": call.name,
                             "arguments": call.arguments}, *result]
    full = oai.responses.create(model=SMOL, input=replay, tools=[WEATHER], max_output_tokens=1)
    assert full.usage.input_tokens == second.usage.input_tokens


def test_unknown_previous_response_id_is_a_404(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        oai.responses.create(model=SMOL, input="hi", previous_response_id="resp_nope")
    assert info.value.body["param"] == "previous_response_id"


def test_json_schema_output_validates(oai: openai.OpenAI) -> None:
    schema = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
              "required": ["name", "age"], "additionalProperties": False}
    r = oai.responses.create(model=SMOL, input="Invent a person: give a name and an age.", temperature=0,
                             max_output_tokens=64,
                             text={"format": {"type": "json_schema", "name": "person", "schema": schema,
                                              "strict": True}})
    jsonschema.validate(json.loads(r.output_text), schema)
    assert r.text.format.type == "json_schema"


def test_retrieve_list_input_items_and_delete(oai: openai.OpenAI) -> None:
    r = oai.responses.create(model=SMOL, input=[{"role": "user", "content": "Hello"}], max_output_tokens=4,
                             metadata={"topic": "greeting"})
    got = oai.responses.retrieve(r.id)
    assert got.id == r.id and got.output_text == r.output_text and got.metadata == {"topic": "greeting"}
    items = oai.responses.input_items.list(r.id)
    assert [(i.type, i.role, i.content[0].text) for i in items.data] == [("message", "user", "Hello")]
    deleted = oai.responses.delete(r.id)
    assert deleted is None or getattr(deleted, "deleted", True)
    with pytest.raises(openai.NotFoundError):
        oai.responses.retrieve(r.id)
    with pytest.raises(openai.NotFoundError):
        oai.responses.delete(r.id)


def test_store_false_keeps_nothing(oai: openai.OpenAI) -> None:
    r = oai.responses.create(model=SMOL, input="Hello", max_output_tokens=2, store=False)
    with pytest.raises(openai.NotFoundError):
        oai.responses.retrieve(r.id)


@pytest.mark.parametrize("prefix", ["", "/engines/v1", "/engines/llama.cpp/v1"])
def test_other_prefixes_serve_the_same_api(base_url: str, prefix: str) -> None:
    client = openai.OpenAI(base_url=base_url + prefix, api_key="unused", max_retries=0, timeout=60)
    r = client.responses.create(model=SMOL, input="Hello", max_output_tokens=2)
    assert r.output_text and client.responses.retrieve(r.id).id == r.id


@pytest.fixture(scope="module")
def short_ttl(store_root: Path, mr_home: Path) -> Iterator[openai.OpenAI]:
    with serve(store_root, mr_home, responses_ttl=1.5) as running:
        yield openai.OpenAI(base_url=f"{running.url}/v1", api_key="unused", max_retries=0, timeout=60)


def test_stored_responses_expire(short_ttl: openai.OpenAI) -> None:
    r = short_ttl.responses.create(model=SMOL, input="Hello", max_output_tokens=2)
    assert short_ttl.responses.retrieve(r.id).id == r.id
    time.sleep(2.0)
    with pytest.raises(openai.NotFoundError):
        short_ttl.responses.retrieve(r.id)
    with pytest.raises(openai.NotFoundError):
        short_ttl.responses.create(model=SMOL, input="Again", previous_response_id=r.id, max_output_tokens=2)


def test_the_sdk_stream_helper_accumulates_the_same_response(det_oai: openai.OpenAI) -> None:
    args = dict(model=SMOL, input="Name three colors.", max_output_tokens=24, temperature=0)
    whole = det_oai.responses.create(**args)
    with det_oai.responses.stream(**args) as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert final.output_text == "".join(deltas) == whole.output_text
