"""The engine's text assembly (cpp/src/text.cpp): UTF-8-safe incremental text, stop strings split
across pieces, and the wire frames rendered in the engine step (no model needed)."""

from __future__ import annotations

import json

import msgspec
import pytest

from mr._native import FrameFormat, TextAssembler


def test_character_split_across_tokens_is_held_back() -> None:
    data = "é🐆東".encode()
    stream = TextAssembler()
    out = [stream.feed(data[i : i + 1]) for i in range(len(data))]
    assert "".join(out) + stream.flush() == "é🐆東"
    assert [p for p in out if p] == ["é", "🐆", "東"]  # each piece a whole character


def test_invalid_bytes_become_replacement_not_errors() -> None:
    stream = TextAssembler()
    assert stream.feed(b"a\xffb") == "a\ufffdb"
    assert stream.feed(b"\xe6\x9d") == ""
    assert stream.flush() == "\ufffd"


@pytest.mark.parametrize(
    "pieces, stops, expected",
    [
        (["Hello", " wor", "ld", "!"], ["world"], "Hello "),
        (["ab", "c<", "|e", "nd|>", "tail"], ["<|end|>"], "abc"),
        (["no stop", " here"], ["zzz"], "no stop here"),
        (["x<", "y"], ["<|end|>"], "x<y"),  # a partial match that fails is released
        (["stop", "A then B"], ["B", "A"], "stop"),  # the earliest stop wins
        (["caf", "\u00e9", "!"], ["\u00e9!"], "caf"),  # a multi-byte stop string
    ],
)
def test_stop_strings(pieces: list[str], stops: list[str], expected: str) -> None:
    matcher = TextAssembler(stops)
    out = "".join(matcher.feed(p.encode()) for p in pieces) + matcher.flush()
    assert out == expected


def test_a_length_cut_drops_an_unfinished_character() -> None:
    """max_tokens may end an answer inside a character: it ends before it, not with U+FFFD."""
    stream = TextAssembler()
    assert stream.feed(b"ab" + "東".encode()[:2]) == "ab"
    assert stream.flush(cut=True) == ""


def test_after_a_stop_nothing_more_comes_out() -> None:
    matcher = TextAssembler(["END"])
    assert matcher.feed(b"a END b") == "a "
    assert (matcher.feed(b"more"), matcher.flush()) == ("", "")
    assert matcher.matched == 0


@pytest.mark.parametrize("text", ["plain", 'quote " back \\ slash', "line\nbreak\ttab\r\b\f",
                                  "\x00\x01\x1f\x7f", "caf\u00e9 \U0001f406 \u2028"])
def test_frames_carry_the_text_as_json_does(text: str) -> None:
    """The engine's JSON string escaping reads back as the text, like msgspec's encoding."""
    frame = FrameFormat(b'{"t":"', b'"}', False).render(text)
    assert json.loads(frame) == {"t": text}
    assert frame == msgspec.json.encode({"t": text})


def test_chunked_frames_are_http_chunks() -> None:
    frame = FrameFormat(b"data: ", b"\n\n", True).render("hi")
    size, _, rest = frame.partition(b"\r\n")
    assert rest.endswith(b"\r\n") and int(size, 16) == len(rest) - 2 == len(b'data: hi\n\n')
