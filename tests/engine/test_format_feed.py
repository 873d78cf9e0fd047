"""Chat formats fed piece by piece: plain content and mr's generic tool format do O(1) work per
piece (a streamed tool call is parsed once, at its end) and end where a whole-answer parse ends."""

from __future__ import annotations

import json

import pytest

from mr.engine.chatformat import ChatFormat
from mr.engine.tools import GenericToolFormat
from mr.engine.types import ChatMessage

TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]


def feed_all(fmt: ChatFormat, pieces: list[str]) -> list:
    deltas = [fmt.feed(p, final=False) for p in pieces]
    deltas.append(fmt.feed("", final=True))
    return [d for d in deltas if d is not None]


def test_a_streamed_tool_call_is_parsed_once_however_long(monkeypatch: pytest.MonkeyPatch) -> None:
    fmt = GenericToolFormat(TOOLS, required=False, parallel=False)
    parses = []
    real = fmt._calls
    monkeypatch.setattr(fmt, "_calls", lambda text: parses.append(text) or real(text))
    city = "x" * 3000
    reply = json.dumps({"tool_calls": [{"name": "get_weather", "arguments": {"city": city}}]})
    deltas = feed_all(fmt, ["  "] + [reply[i:i + 3] for i in range(0, len(reply), 3)])
    assert len(parses) == 1  # not once per piece: linear in the call's length
    [delta] = deltas
    assert delta.tool_calls[0].name == "get_weather"
    assert json.loads(delta.tool_calls[0].arguments) == {"city": city}
    assert fmt.message().tool_calls == fmt.parse("  " + reply, partial=False).tool_calls


@pytest.mark.parametrize("reply", ["  Hello there, {not a call}", "\n\n", "{\"not\": \"tools\"}", ""])
def test_generic_replies_that_are_not_calls_stream_as_content(reply: str) -> None:
    fmt = GenericToolFormat(TOOLS, required=False, parallel=False)
    deltas = feed_all(fmt, [reply[i:i + 2] for i in range(0, len(reply), 2)])
    assert "".join(d.content for d in deltas) == reply
    assert fmt.message() == ChatMessage(content=reply)
    if reply.strip() and not reply.lstrip().startswith("{"):
        assert len(deltas) > 1  # content streams as it comes, not held back


def test_plain_content_is_its_own_delta_and_the_message_joins_it() -> None:
    fmt = ChatFormat()
    deltas = feed_all(fmt, ["a", "b", "", "c"])
    assert [d.content for d in deltas] == ["a", "b", "c"]
    assert fmt.message() == ChatMessage(content="abc")
    fresh = fmt.fresh()
    assert fresh.message() == ChatMessage() and fmt.message().content == "abc"
