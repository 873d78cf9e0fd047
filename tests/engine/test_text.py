"""UTF-8-safe incremental text and stop strings split across pieces (no model needed)."""

from __future__ import annotations

import pytest

from mr.engine.text import StopMatcher, Utf8Stream


def test_character_split_across_tokens_is_held_back() -> None:
    data = "é🐆東".encode()
    stream = Utf8Stream()
    out = [stream.feed(data[i : i + 1]) for i in range(len(data))]
    assert "".join(out) + stream.flush() == "é🐆東"
    assert [p for p in out if p] == ["é", "🐆", "東"]  # each piece a whole character


def test_invalid_bytes_become_replacement_not_errors() -> None:
    stream = Utf8Stream()
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
    ],
)
def test_stop_strings(pieces: list[str], stops: list[str], expected: str) -> None:
    matcher = StopMatcher(stops)
    out = "".join(matcher.feed(p) for p in pieces) + matcher.flush()
    assert out == expected
