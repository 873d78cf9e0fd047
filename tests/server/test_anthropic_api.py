"""Anthropic's Messages API driven by the official `anthropic` SDK (base_url pointing at mr)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import anthropic
import httpx
import jsonschema
import pytest

from support.serving import SMOL, serve

pytestmark = pytest.mark.slow

# This SDK no longer takes sampling parameters as arguments (newer Claude models ignore them); the
# Messages API still defines them, and mr honours them, so they travel in the body.
GREEDY: dict = {"extra_body": {"temperature": 0}}
QUESTION = [{"role": "user", "content": "Name three colors."}]
WEATHER = {
    "name": "get_weather",
    "description": "Current weather of a city",
    "input_schema": {"type": "object", "required": ["city"],
                     "properties": {"city": {"type": "string"}, "days": {"type": "integer"}}},
}


def client_for(url: str, api_key: str = "unused") -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=url, api_key=api_key, max_retries=0, timeout=60)


@pytest.fixture
def ant(base_url: str) -> anthropic.Anthropic:
    return client_for(base_url)


@pytest.fixture
def det_ant(det_url: str) -> anthropic.Anthropic:
    """The deterministic server's (conftest.det_url): for greedy answers compared across requests."""
    return client_for(det_url)


def test_message_has_text_usage_and_stop_reason(ant: anthropic.Anthropic) -> None:
    m = ant.messages.create(model=SMOL, max_tokens=16, messages=QUESTION, **GREEDY)
    assert m.type == "message" and m.role == "assistant" and m.id.startswith("msg")
    assert m.model == SMOL
    assert [b.type for b in m.content] == ["text"] and m.content[0].text
    assert m.stop_reason in ("end_turn", "max_tokens") and m.stop_sequence is None
    assert m.usage.input_tokens + (m.usage.cache_read_input_tokens or 0) > 0
    assert 0 < m.usage.output_tokens <= 16


def test_streamed_text_equals_the_message_at_temperature_zero(det_ant: anthropic.Anthropic) -> None:
    args = dict(model=SMOL, max_tokens=24, messages=QUESTION, **GREEDY)
    whole = det_ant.messages.create(**args)
    kinds = []
    with det_ant.messages.stream(**args) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_message()
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert {"content_block_start", "content_block_delta", "content_block_stop", "message_delta"} <= set(kinds)
    assert final.content[0].text == whole.content[0].text
    assert final.stop_reason == whole.stop_reason
    assert final.usage.output_tokens == whole.usage.output_tokens
    assert final.usage.input_tokens + (final.usage.cache_read_input_tokens or 0) == \
        whole.usage.input_tokens + (whole.usage.cache_read_input_tokens or 0)


def test_system_prompt_as_text_or_blocks_is_in_the_prompt(ant: anthropic.Anthropic) -> None:
    short = ant.messages.create(model=SMOL, max_tokens=1, messages=QUESTION, system="Be brief.")
    system = "You are a pirate. Always answer in pirate speech, with many nautical words."
    as_text = ant.messages.create(model=SMOL, max_tokens=1, messages=QUESTION, system=system)
    as_blocks = ant.messages.create(model=SMOL, max_tokens=1, messages=QUESTION,
                                    system=[{"type": "text", "text": system}])

    def prompt(m: anthropic.types.Message) -> int:
        return m.usage.input_tokens + (m.usage.cache_read_input_tokens or 0)

    assert prompt(as_text) == prompt(as_blocks) > prompt(short)


def test_stop_sequence_is_reported(det_ant: anthropic.Anthropic) -> None:
    args = dict(model=SMOL, max_tokens=40, **GREEDY,
                messages=[{"role": "user", "content": "Count from 1 to 20, separated by commas."}])
    free = det_ant.messages.create(**args).content[0].text
    # The stop sequence is taken from this machine's own greedy answer (wording differs by CPU).
    middle = free[len(free) // 2:]
    stop = next(middle[i:i + 2] for i in range(len(middle) - 1) if middle[i:i + 2].strip() == middle[i:i + 2])
    m = det_ant.messages.create(stop_sequences=[stop], **args)
    assert m.stop_reason == "stop_sequence" and m.stop_sequence == stop
    assert stop not in m.content[0].text and free.startswith(m.content[0].text)
    with det_ant.messages.stream(stop_sequences=[stop], **args) as stream:
        streamed = stream.get_final_message()
    assert (streamed.stop_reason, streamed.stop_sequence) == ("stop_sequence", stop)
    assert streamed.content[0].text == m.content[0].text


def test_max_tokens_stop_reason(ant: anthropic.Anthropic) -> None:
    m = ant.messages.create(model=SMOL, max_tokens=3, **GREEDY,
                            messages=[{"role": "user", "content": "Write a long story about a dragon."}])
    assert m.stop_reason == "max_tokens" and m.usage.output_tokens == 3


def test_forced_tool_gives_a_valid_tool_use_block(ant: anthropic.Anthropic) -> None:
    m = ant.messages.create(model=SMOL, max_tokens=128, **GREEDY, tools=[WEATHER],
                            tool_choice={"type": "tool", "name": "get_weather",
                                         "disable_parallel_tool_use": True},
                            messages=[{"role": "user", "content": "What is the weather in Paris?"}])
    assert m.stop_reason == "tool_use"
    uses = [b for b in m.content if b.type == "tool_use"]
    assert len(uses) == 1 and uses[0].name == "get_weather" and uses[0].id
    jsonschema.validate(uses[0].input, WEATHER["input_schema"])


def test_forced_tool_streamed_as_input_json_deltas(ant: anthropic.Anthropic) -> None:
    args = dict(model=SMOL, max_tokens=128, **GREEDY, tools=[WEATHER], tool_choice={"type": "any"},
                messages=[{"role": "user", "content": "What is the weather in Paris?"}])
    with ant.messages.stream(**args) as stream:
        deltas = [e.delta.type for e in stream if e.type == "content_block_delta"]
        final = stream.get_final_message()
    assert "input_json_delta" in deltas
    assert final.stop_reason == "tool_use"
    uses = [b for b in final.content if b.type == "tool_use"]
    assert uses and all(b.name == "get_weather" for b in uses)
    for use in uses:
        jsonschema.validate(use.input, WEATHER["input_schema"])


def test_tool_result_round_trip(ant: anthropic.Anthropic) -> None:
    ask = [{"role": "user", "content": "What is the weather in Paris?"}]
    first = ant.messages.create(model=SMOL, max_tokens=128, **GREEDY, tools=[WEATHER], messages=ask,
                                tool_choice={"type": "tool", "name": "get_weather",
                                             "disable_parallel_tool_use": True})
    [use] = [b for b in first.content if b.type == "tool_use"]
    follow_up = [*ask, {"role": "assistant", "content": [b.model_dump() for b in first.content]},
                 {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id,
                                               "content": "Sunny, 24 degrees Celsius"}]}]
    second = ant.messages.create(model=SMOL, max_tokens=32, **GREEDY, tools=[WEATHER],
                                 tool_choice={"type": "none"}, messages=follow_up)
    assert second.stop_reason in ("end_turn", "max_tokens")
    assert [b.type for b in second.content] == ["text"] and second.content[0].text
    counted = ant.messages.count_tokens(model=SMOL, messages=follow_up)
    without_result = ant.messages.count_tokens(model=SMOL, messages=follow_up[:2])
    assert counted.input_tokens > without_result.input_tokens  # the result is in the prompt


def test_count_tokens_equals_the_usage_of_the_same_prompt(ant: anthropic.Anthropic) -> None:
    prompt = dict(model=SMOL, system="Be brief.",
                  messages=[{"role": "user", "content": "Say hello to the moon."}])
    counted = ant.messages.count_tokens(**prompt)
    m = ant.messages.create(max_tokens=2, **prompt)
    assert counted.input_tokens == m.usage.input_tokens + (m.usage.cache_read_input_tokens or 0)
    with_tools = ant.messages.count_tokens(tools=[WEATHER], **prompt)
    assert with_tools.input_tokens > counted.input_tokens  # the tools are described in the prompt


def test_repeated_prompt_reads_the_prefix_cache(ant: anthropic.Anthropic) -> None:
    long = [{"role": "user", "content": "Tell me about the sea. " * 20}]
    ant.messages.create(model=SMOL, max_tokens=1, messages=long)
    again = ant.messages.create(model=SMOL, max_tokens=1, messages=long)
    assert again.usage.cache_read_input_tokens and again.usage.cache_read_input_tokens > 100


def test_missing_model_is_a_not_found_error(ant: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.NotFoundError) as info:
        ant.messages.create(model="ai/no-such-model", max_tokens=4, messages=QUESTION)
    body = info.value.body
    assert body["type"] == "error" and body["error"]["type"] == "not_found_error"
    assert "no-such-model" in body["error"]["message"]


@pytest.mark.parametrize("prefix", ["/anthropic", "/engines", "/engines/llama.cpp"])
def test_other_prefixes_serve_the_same_api(base_url: str, prefix: str) -> None:
    m = client_for(base_url + prefix).messages.create(model=SMOL, max_tokens=2, messages=QUESTION)
    assert m.content and m.usage.output_tokens > 0


@pytest.fixture(scope="module")
def keyed(store_root: Path, mr_home: Path) -> Iterator[str]:
    with serve(store_root, mr_home, api_key="sekret") as running:
        yield running.url


def test_x_api_key_and_bearer_are_both_accepted(keyed: str) -> None:
    m = client_for(keyed, api_key="sekret").messages.create(model=SMOL, max_tokens=1, messages=QUESTION)
    assert m.usage.output_tokens == 1
    bearer = httpx.post(f"{keyed}/v1/messages/count_tokens", headers={"Authorization": "Bearer sekret"},
                        json={"model": SMOL, "messages": QUESTION})
    assert bearer.status_code == 200 and bearer.json()["input_tokens"] > 0
    with pytest.raises(anthropic.AuthenticationError) as info:
        client_for(keyed, api_key="wrong").messages.create(model=SMOL, max_tokens=1, messages=QUESTION)
    assert info.value.body["error"]["type"] == "authentication_error"
