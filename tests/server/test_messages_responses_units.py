"""The parts of the Anthropic and Responses routes that need no model: the response store's
bounds, both event writers (checked by the SDKs' own stream accumulators, which are strict about
order), stop-sequence reporting, and `thinking` reaching the chat template."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mr._native import TextAssembler
from mr.engine import ChatDelta, ChatOptions, ToolCallDelta, Usage
from mr.server.anthropic.events import EventWriter
from mr.server.responses.events import ResponseEvents
from mr.server.responses.output import Skeleton
from mr.server.responses.protocol import ResponseRequest
from mr.server.responses.store import Entry, ResponseStore

DELTAS = [
    ChatDelta(reasoning_content="Let me think"), ChatDelta(reasoning_content=" about it."),
    ChatDelta(content="It is "), ChatDelta(content="sunny."),
    ChatDelta(tool_calls=[ToolCallDelta(index=0, id="call_a", name="get_weather", arguments='{"city": ')]),
    ChatDelta(tool_calls=[ToolCallDelta(index=0, arguments='"Paris"}')]),
    ChatDelta(tool_calls=[ToolCallDelta(index=1, id="call_b", name="get_time", arguments="{}")]),
]


def sse_payloads(frames: list[bytes]) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for frame in b"".join(frames).decode().split("\n\n")[:-1]:
        event, data = frame.split("\n")
        out.append((event.removeprefix("event: "), json.loads(data.removeprefix("data: "))))
    return out


# ---- store ----

class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def entry(text: str = "x") -> Entry:
    return Entry(response={"id": "r", "output": text}, input_items=[], conversation=[])


def test_store_expires_entries_after_the_ttl() -> None:
    clock = Clock()
    store = ResponseStore(ttl=10, max_entries=10, max_bytes=1 << 20, clock=clock)
    store.put("a", entry())
    clock.now = 5
    store.put("b", entry())
    assert store.get("a") is not None
    clock.now = 10.5
    assert store.get("a") is None and store.get("b") is not None
    clock.now = 20
    assert store.get("b") is None and len(store) == 0 and store.bytes == 0


def test_store_drops_the_oldest_past_the_entry_and_byte_caps() -> None:
    store = ResponseStore(ttl=100, max_entries=2, max_bytes=1 << 20)
    for key in "abc":
        store.put(key, entry())
    assert [store.get(k) is not None for k in "abc"] == [False, True, True]
    one = entry("y" * 1000).measure()
    small = ResponseStore(ttl=100, max_entries=100, max_bytes=int(one * 2.5))
    for key in "abc":
        small.put(key, entry("y" * 1000))
    assert [small.get(k) is not None for k in "abc"] == [False, True, True]
    assert small.bytes <= small.max_bytes
    assert not small.put("huge", entry("z" * 10_000)) and small.get("huge") is None
    assert small.delete("b") and not small.delete("b")


# ---- Anthropic events ----

def test_anthropic_events_accumulate_into_thinking_text_and_tool_use_blocks() -> None:
    from anthropic.lib.streaming._messages import accumulate_event

    writer = EventWriter("msg_1", "ai/x")
    frames = [writer.start(Usage(prompt_tokens=10, cached_tokens=4))]
    for delta in DELTAS:
        frames += writer.delta(delta)
    frames += writer.end("tool_use", None, Usage(prompt_tokens=10, completion_tokens=7, cached_tokens=4))
    events = sse_payloads(frames)
    assert all(name == payload["type"] for name, payload in events)
    assert [name for name, _ in events][:2] == ["message_start", "ping"]
    snapshot, bufs = None, {}
    for name, payload in events:
        if name != "ping":
            snapshot = accumulate_event(event=payload, current_snapshot=snapshot, json_bufs=bufs)
    assert snapshot is not None
    assert [b.type for b in snapshot.content] == ["thinking", "text", "tool_use", "tool_use"]
    assert snapshot.content[0].thinking == "Let me think about it."
    assert snapshot.content[1].text == "It is sunny."
    assert snapshot.content[2].input == {"city": "Paris"} and snapshot.content[3].input == {}
    assert snapshot.stop_reason == "tool_use"
    assert (snapshot.usage.input_tokens, snapshot.usage.cache_read_input_tokens) == (6, 4)
    assert snapshot.usage.output_tokens == 7


# ---- Responses events ----

def test_responses_events_accumulate_in_order_with_sequence_numbers() -> None:
    from openai import omit
    from openai._models import construct_type_unchecked
    from openai.lib.streaming.responses._responses import ResponseStreamState
    from openai.types.responses import ResponseStreamEvent

    skeleton = Skeleton(ResponseRequest(model="ai/x", input="hi"))
    events = ResponseEvents(skeleton)
    frames = events.start()
    for delta in DELTAS:
        frames += events.delta(delta)
    frames += events.close("completed")
    response = skeleton.response("completed", events.items, Usage(prompt_tokens=3, completion_tokens=7))
    frames += events.end("completed", response)
    payloads = sse_payloads(frames)
    assert [p["sequence_number"] for _, p in payloads] == list(range(len(payloads)))
    state = ResponseStreamState(input_tools=omit, text_format=omit)
    for _, payload in payloads:
        event = construct_type_unchecked(type_=ResponseStreamEvent, value=payload)  # type: ignore[arg-type]
        state.handle_event(event)
    kinds = [item["type"] for item in events.items]
    assert kinds == ["reasoning", "message", "function_call", "function_call"]
    assert events.items[1]["content"][0]["text"] == "It is sunny."
    assert json.loads(events.items[2]["arguments"]) == {"city": "Paris"}
    assert [item["call_id"] for item in events.items[2:]] == ["call_a", "call_b"]
    final = payloads[-1][1]["response"]
    assert final["status"] == "completed" and final["output"] == events.items


# ---- stop sequences, thinking ----

def test_stop_matcher_reports_which_stop_ended_the_text() -> None:
    matcher = TextAssembler(["END", "STOP"])
    assert matcher.feed(b"abc ST") == "abc "
    assert matcher.feed(b"OP and END") == ""
    assert matcher.stopped and matcher.matched == 1  # STOP
    assert TextAssembler(["x"]).matched == -1


THINKING_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and not enable_thinking %}<think>\n\n</think>\n{% endif %}{% endif %}"
)


@pytest.mark.slow
def test_thinking_switch_reaches_the_chat_template(smollm2_path: Path) -> None:
    from mr.engine import LLM, EngineOptions

    with LLM(smollm2_path, EngineOptions(n_ctx=256, n_slots=1), chat_template=THINKING_TEMPLATE) as llm:
        messages = [{"role": "user", "content": "hi"}]
        on, _ = llm.render_chat(messages, ChatOptions(chat_template_kwargs={"enable_thinking": True}))
        off, _ = llm.render_chat(messages, ChatOptions(chat_template_kwargs={"enable_thinking": False}))
        default, _ = llm.render_chat(messages)
    assert "<think>" in off and "<think>" not in on and default == on
