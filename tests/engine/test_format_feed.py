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


def _reasoning_format(tiny_gguf):
    from pathlib import Path

    from mr.engine import LLM, EngineOptions
    from mr.engine.chatformat import NativeFormat

    template = (Path(__file__).parents[1] / "data" / "think.jinja").read_text()
    llm = LLM(tiny_gguf, EngineOptions(n_ctx=512, n_slots=1), chat_template=template)
    fmt = llm.prepare_chat([{"role": "user", "content": "hi"}]).fmt
    assert isinstance(fmt, NativeFormat)
    return llm, fmt


def test_a_long_reasoning_block_is_not_reparsed_per_piece(tiny_gguf, monkeypatch: pytest.MonkeyPatch) -> None:
    llm, fmt = _reasoning_format(tiny_gguf)
    with llm:
        parses = []
        real = fmt.parse
        monkeypatch.setattr(fmt, "parse", lambda text, partial: parses.append(text) or real(text, partial))
        words = [" step", " by", " step,", " we", " count", " 42."] * 300
        answer = ["Let", " me", " think.", *words, "\n</think>\n\n", "The", " answer", " is", " 42."]
        deltas = feed_all(fmt, answer)
        whole = real("".join(answer), False)
    assert len(parses) < 20  # the markup pieces and the final parse, not one per word
    assert "".join(d.reasoning_content or "" for d in deltas) == whole.reasoning_content
    assert "".join(d.content or "" for d in deltas) == whole.content == "The answer is 42."
    assert fmt.message() == whole


@pytest.mark.parametrize("piece", ["<", " {", "\n", "[", "a|b", "word "])
def test_a_piece_that_may_be_markup_goes_to_the_parser(tiny_gguf, piece: str,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    llm, fmt = _reasoning_format(tiny_gguf)
    with llm:
        for p in ["Let", " me", " think"]:
            fmt.feed(p, final=False)
        parses = []
        real = fmt.parse
        monkeypatch.setattr(fmt, "parse", lambda text, partial: parses.append(text) or real(text, partial))
        fmt.feed(" more", final=False)
        fmt.feed(piece, final=False)
    assert len(parses) == 1 and parses[0].endswith(piece)


def _hermes_format(tiny_gguf):
    from pathlib import Path

    from mr.engine import LLM, EngineOptions
    from mr.engine.chatformat import NativeFormat
    from mr.engine.types import ChatOptions

    template = (Path(__file__).parents[1] / "data" / "hermes_tools.jinja").read_text()
    llm = LLM(tiny_gguf, EngineOptions(n_ctx=512, n_slots=1), chat_template=template)
    tools = [{"type": "function", "function": {"name": "note", "parameters": {
        "type": "object", "properties": {"text": {"type": "string"}, "n": {"type": "integer"}}}}}]
    fmt = llm.prepare_chat([{"role": "user", "content": "hi"}], ChatOptions(tools=tools)).fmt
    assert isinstance(fmt, NativeFormat)
    return llm, fmt


def test_a_long_native_tool_call_is_not_reparsed_per_piece(tiny_gguf,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    llm, fmt = _hermes_format(tiny_gguf)
    with llm:
        parses = []
        real = fmt.parse
        monkeypatch.setattr(fmt, "parse", lambda text, partial: parses.append(text) or real(text, partial))
        words = [" it", " rains", " in", " Paris,", " 'often'", " (they", " say)."] * 300
        answer = ["<tool_call>", "\n", '{"', "name", '":', ' "', "note", '",', ' "', "arguments", '":', " {",
                  '"', "text", '":', ' "', "Today", *words, '",', ' "', "n", '":', " 12", "}}", "\n",
                  "</tool_call>"]
        deltas = feed_all(fmt, answer)
        whole = real("".join(answer), False)
    assert len(parses) < 40  # the markup pieces and the final parse, not one per word
    [call] = whole.tool_calls
    assert json.loads(call.arguments) == {"text": "Today" + "".join(words), "n": 12}
    streamed = [tc for d in deltas for tc in d.tool_calls]
    assert "".join(tc.arguments for tc in streamed) == call.arguments
    assert [tc.name for tc in streamed if tc.name] == ["note"] and {tc.index for tc in streamed} == {0}
    assert fmt.message() == whole


def test_json_arguments_written_by_the_model_stream_without_a_parse_per_quote(
        tiny_gguf, monkeypatch: pytest.MonkeyPatch) -> None:
    llm, fmt = _hermes_format(tiny_gguf)
    with llm:
        parses = []
        real = fmt.parse
        monkeypatch.setattr(fmt, "parse", lambda text, partial: parses.append(text) or real(text, partial))
        items = [f"item {i}" for i in range(300)]
        words = [p for i in range(300) for p in ("item", f" {i}", '", "')][:-1]
        answer = ["<tool_call>", "\n", '{"', "name", '":', ' "', "note", '",', ' "', "arguments", '":', " {",
                  '"', "text", '":', ' ["', *words, '"]}}', "\n", "</tool_call>"]
        deltas = feed_all(fmt, answer)
        whole = real("".join(answer), False)
    assert len(parses) < 40  # quotes, once they proved to pass as written, need no parse
    assert json.loads(whole.tool_calls[0].arguments) == {"text": items}
    assert "".join(tc.arguments for d in deltas for tc in d.tool_calls) == whole.tool_calls[0].arguments
    assert fmt.message() == whole
