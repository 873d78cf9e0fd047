"""/v1/chat/completions with the official openai client (sync and async) and raw SSE checks."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import httpx
import openai
import pytest

from support.serving import SMOL
from support.sse import parse_sse

MESSAGES = [{"role": "user", "content": "Name three colors."}]


def test_non_streamed_answer_has_content_usage_and_finish(oai) -> None:
    r = oai.chat.completions.create(model=SMOL, messages=MESSAGES, max_tokens=12, temperature=0)
    assert r.object == "chat.completion" and r.id.startswith("chatcmpl-")
    assert r.model == SMOL
    choice = r.choices[0]
    assert choice.message.role == "assistant" and choice.message.content
    assert choice.finish_reason in ("stop", "length")
    assert r.usage.prompt_tokens > 0 and 0 < r.usage.completion_tokens <= 12
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    assert r.usage.prompt_tokens_details.cached_tokens >= 0


def test_streamed_text_equals_non_streamed_at_temperature_zero(det_oai) -> None:
    args = dict(model=SMOL, messages=MESSAGES, max_tokens=24, temperature=0)
    whole = det_oai.chat.completions.create(**args).choices[0].message.content
    chunks = list(det_oai.chat.completions.create(stream=True, **args))
    joined = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert joined == whole
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")


def test_raw_sse_frames_are_valid_with_one_id_and_usage_last(http: httpx.Client) -> None:
    body = {"model": SMOL, "messages": [{"role": "user", "content": "Write a word in French with accents."}],
            "max_tokens": 16, "temperature": 0, "stream": True, "stream_options": {"include_usage": True}}
    r = http.post("/v1/chat/completions", json=body)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    payloads, done = parse_sse(r.content)
    assert done
    assert len({p["id"] for p in payloads}) == 1
    choice_chunks = [p for p in payloads if p["choices"]]
    assert choice_chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    finishes = [p["choices"][0]["finish_reason"] for p in choice_chunks]
    assert finishes[-1] in ("stop", "length") and all(f is None for f in finishes[:-1])
    usage = payloads[-1]
    assert usage["choices"] == [] and usage["usage"]["completion_tokens"] > 0
    assert all(p["usage"] is None for p in payloads[:-1])


def test_n_choices_streamed_and_not(det_oai) -> None:
    args = dict(model=SMOL, messages=MESSAGES, max_tokens=8, temperature=1.0, seed=7, n=2)
    r = det_oai.chat.completions.create(**args)
    assert [c.index for c in r.choices] == [0, 1]
    assert all(c.message.content for c in r.choices)
    seen: dict[int, str] = {0: "", 1: ""}
    finished = set()
    for chunk in det_oai.chat.completions.create(stream=True, **args):
        for c in chunk.choices:
            seen[c.index] += c.delta.content or ""
            if c.finish_reason:
                finished.add(c.index)
    assert finished == {0, 1}
    assert all(seen.values())
    # Sampled text is not compared across the two calls: the second finds the prompt cached and
    # its forks batched differently, and batch shape changes float rounding (as in llama-server,
    # whose cache_prompt carries the same caveat). Greedy choices must agree, though:
    greedy = {**args, "temperature": 0}
    plain = det_oai.chat.completions.create(**greedy)
    streamed = {0: "", 1: ""}
    for chunk in det_oai.chat.completions.create(stream=True, **greedy):
        for c in chunk.choices:
            streamed[c.index] += c.delta.content or ""
    assert streamed == {c.index: c.message.content for c in plain.choices}


def test_logprobs_and_top_logprobs(oai) -> None:
    r = oai.chat.completions.create(model=SMOL, messages=MESSAGES, max_tokens=5, temperature=0,
                                    logprobs=True, top_logprobs=3)
    content = r.choices[0].logprobs.content
    assert len(content) == r.usage.completion_tokens
    for item in content:
        assert item.logprob <= 0 and len(item.top_logprobs) == 3
        assert item.top_logprobs[0].logprob >= item.top_logprobs[-1].logprob
    assert "".join(i.token for i in content) == r.choices[0].message.content


def test_stop_sequence_and_logit_bias_are_applied(det_oai, det_url: str) -> None:
    # The deterministic server: greedy answers to one prompt are comparable across requests.
    oai = det_oai
    base = dict(model=SMOL, messages=[{"role": "user", "content": "Count: 1, 2, 3, 4, 5, 6"}],
                max_tokens=30, temperature=0)
    free = oai.chat.completions.create(**base).choices[0].message.content
    assert free
    stop = free.strip()[2:4] or free[:2]
    stopped = oai.chat.completions.create(stop=[stop], **base)
    assert stop not in stopped.choices[0].message.content
    assert stopped.choices[0].finish_reason == "stop"
    # logit_bias -100 bans a token: ban the free answer's second token. The greedy answer keeps
    # the first token, then goes another way, and never chooses the banned one.
    tokens = [t.token for t in oai.chat.completions.create(logprobs=True, **base).choices[0].logprobs.content]
    assert "".join(tokens) == free and len(tokens) >= 2
    [second] = httpx.post(det_url + "/tokenize", json={"model": SMOL, "content": tokens[1]}).json()["tokens"]
    banned = oai.chat.completions.create(logit_bias={str(second): -100}, logprobs=True, **base).choices[0]
    chosen = [t.token for t in banned.logprobs.content]
    assert chosen[0] == tokens[0] and tokens[1] not in chosen


@pytest.mark.parametrize("penalty", [{"frequency_penalty": 2.0}, {"presence_penalty": 2.0},
                                     {"extra_body": {"repeat_penalty": 1.5}},
                                     {"frequency_penalty": 2.0, "presence_penalty": 0.5,
                                      "extra_body": {"top_k": 20, "min_p": 0.1, "repeat_penalty": 1.1}}])
def test_penalties_change_a_repetitive_answer(det_oai, penalty: dict[str, Any]) -> None:
    """Each penalty reaches the sampler: with one seed in the deterministic mode an answer repeats
    exactly, and penalized it is another (a penalty dropped on the way leaves it as it is). Sampled,
    not greedy: whether a penalty of 2 flips a greedy answer depends on the CPU's last bits (on a
    Zen 4 "The cat is a cat." kept both cats under either penalty)."""
    base = dict(model=SMOL, messages=[{"role": "user", "content": "Repeat the word cat ten times."}],
                max_tokens=30, temperature=1.0, seed=11)
    free = det_oai.chat.completions.create(**base).choices[0].message.content
    assert free and free == det_oai.chat.completions.create(**base).choices[0].message.content
    penalized = det_oai.chat.completions.create(**penalty, **base).choices[0].message.content
    assert penalized and penalized != free, penalized


def test_max_completion_tokens_wins(oai) -> None:
    r = oai.chat.completions.create(model=SMOL, messages=MESSAGES, max_completion_tokens=3, max_tokens=50,
                                    temperature=0)
    assert r.usage.completion_tokens == 3 and r.choices[0].finish_reason == "length"


def test_content_parts_and_developer_role(oai) -> None:
    r = oai.chat.completions.create(
        model=SMOL, max_tokens=4, temperature=0,
        messages=[{"role": "developer", "content": "Be brief."},
                  {"role": "user", "content": [{"type": "text", "text": "Say"},
                                               {"type": "text", "text": "hi"}]}])
    assert r.choices[0].message.content


def test_image_parts_to_a_text_model_are_refused_naming_the_part_and_the_model(oai) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        oai.chat.completions.create(model=SMOL, max_tokens=4, messages=[{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}])
    assert info.value.body["param"] == "messages[0].content[0]" and SMOL in info.value.body["message"]


def test_async_client_stream_and_not(det_aoai) -> None:
    async def run() -> tuple[str, str]:
        args = dict(model=SMOL, messages=MESSAGES, max_tokens=10, temperature=0)
        whole = (await det_aoai.chat.completions.create(**args)).choices[0].message.content
        parts = []
        async for chunk in await det_aoai.chat.completions.create(stream=True, **args):
            if chunk.choices:
                parts.append(chunk.choices[0].delta.content or "")
        return whole, "".join(parts)

    whole, joined = asyncio.run(run())
    assert whole and whole == joined


def test_concurrent_async_requests_share_the_slots(aoai) -> None:
    async def one(i: int) -> str:
        r = await aoai.chat.completions.create(model=SMOL, max_tokens=6, temperature=0,
                                               messages=[{"role": "user", "content": f"Number {i}?"}])
        return r.choices[0].message.content

    async def all_of_them() -> list[str]:
        return await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(8))), 60)

    answers = asyncio.run(all_of_them())
    assert len(answers) == 8 and all(answers)


def test_unknown_fields_are_ignored_and_logged(http: httpx.Client, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="mr.server"):
        r = http.post("/v1/chat/completions", json={"model": SMOL, "messages": MESSAGES, "max_tokens": 2,
                                                   "some_future_field": {"x": 1}, "user": "u1"})
    assert r.status_code == 200, r.text
    assert json.loads(r.text)["choices"][0]["message"]["content"] is not None
    assert "some_future_field" in caplog.text


SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
          "required": ["name", "age"], "additionalProperties": False}


def test_json_schema_strict_output(oai) -> None:
    r = oai.chat.completions.create(
        model=SMOL, max_tokens=60, temperature=0,
        messages=[{"role": "user", "content": "Invent a person; answer in JSON."}],
        response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": SCHEMA,
                                                                "strict": True}})
    data = json.loads(r.choices[0].message.content)
    assert set(data) == {"name", "age"} and isinstance(data["age"], int)


def test_json_object_output_streamed(oai) -> None:
    # A bounded schema: json_object alone lets a 135M model ramble past max_tokens.
    schema = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 24}},
              "required": ["name"], "additionalProperties": False}
    chunks = oai.chat.completions.create(
        model=SMOL, max_tokens=200, temperature=0, stream=True,
        response_format={"type": "json_schema", "json_schema": {"name": "cat", "schema": schema}},
        messages=[{"role": "user", "content": "Give me a tiny JSON object with a cat's name."}])
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert set(json.loads(text)) == {"name"}


WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather of a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


def test_tool_call_round_trip(oai) -> None:
    messages = [{"role": "user", "content": "What is the weather in Paris?"}]
    r = oai.chat.completions.create(model=SMOL, messages=messages, tools=[WEATHER], tool_choice="required",
                                    parallel_tool_calls=False, max_tokens=120, temperature=0)
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert call.type == "function" and call.function.name == "get_weather" and call.id
    assert "city" in json.loads(call.function.arguments)
    messages += [choice.message.model_dump(exclude_none=True),
                 {"role": "tool", "tool_call_id": call.id, "content": '{"temperature_c": 21}'}]
    final = oai.chat.completions.create(model=SMOL, messages=messages, tools=[WEATHER], tool_choice="none",
                                        max_tokens=30, temperature=0)
    assert final.choices[0].message.content


def test_tool_call_deltas_stream(oai) -> None:
    chunks = list(oai.chat.completions.create(
        model=SMOL, messages=[{"role": "user", "content": "Weather in Rome?"}], tools=[WEATHER],
        tool_choice={"type": "function", "function": {"name": "get_weather"}}, max_tokens=120,
        temperature=0, stream=True))
    deltas = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert deltas and deltas[0].index == 0 and deltas[0].id and deltas[0].function.name == "get_weather"
    arguments = "".join(d.function.arguments or "" for d in deltas if d.index == 0)
    assert "city" in json.loads(arguments)
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_required_call_is_one_call_unless_parallel_calls_are_asked_for(oai) -> None:
    # The arguments are bounded by their schema, so the grammar, not the model's wording (which
    # differs between CPUs), decides whether one call ends the answer.
    city = {"type": "function", "function": {
        "name": "get_weather", "description": "Current weather of a city",
        "parameters": {"type": "object", "properties": {"city": {"enum": ["Paris", "London", "Rome"]}},
                       "required": ["city"], "additionalProperties": False}}}
    args = dict(model=SMOL, messages=[{"role": "user", "content": "What is the weather in Paris?"}],
                tools=[city], tool_choice="required", max_tokens=400, temperature=0)
    one = oai.chat.completions.create(**args).choices[0]  # greedy repeated the call 4 times before
    assert one.finish_reason == "tool_calls" and len(one.message.tool_calls) == 1
    many = oai.chat.completions.create(parallel_tool_calls=True, **args).choices[0]
    # several calls are allowed (the grammar repeats the call): how many the model writes, and
    # whether it stops before max_tokens, is its wording
    calls = many.message.tool_calls or []
    assert many.finish_reason == "length" or (many.finish_reason == "tool_calls" and calls)
    assert all(call.function.name == "get_weather" for call in calls)
