"""Hypothesis properties of the text pipeline (issue 12, fuzzing suite): UTF-8 hold-back, stop
matching, chat deltas and reference parsing, each against a simple model of what it must do.
MR_FUZZ_EXAMPLES raises the example count (scripts/fuzz.sh)."""

from __future__ import annotations

import itertools
import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mr._native import TextAssembler
from mr.engine.chatformat import ChatFormat
from mr.engine.types import ChatMessage, ToolCall
from mr.errors import MrError

EXAMPLES = int(os.environ.get("MR_FUZZ_EXAMPLES", "200"))
if os.environ.get("MR_FUZZ_LONG") == "1":  # scripts/fuzz.sh --long
    EXAMPLES = max(EXAMPLES, 5000)
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))


def _splits(data: bytes | str, cuts: list[int]) -> list:
    points = sorted({c % (len(data) + 1) for c in cuts})
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


@SETTINGS
@given(st.text(), st.lists(st.integers(0, 10_000), max_size=30))
def test_utf8_pieces_are_whole_characters_and_join_to_the_text(text: str, cuts: list[int]) -> None:
    stream = TextAssembler()
    pieces = [stream.feed(p) for p in _splits(text.encode("utf-8", "surrogatepass"), cuts)]
    pieces.append(stream.flush())
    joined = "".join(pieces)
    if all(not 0xD800 <= ord(c) <= 0xDFFF for c in text):
        assert joined == text  # valid UTF-8 comes out exactly, however it was split
    for piece in pieces:
        piece.encode("utf-8")  # never a lone surrogate: every piece is valid UTF-8


@SETTINGS
@given(st.binary(max_size=200), st.lists(st.integers(0, 1000), max_size=20))
def test_any_bytes_decode_like_a_one_shot_decode(data: bytes, cuts: list[int]) -> None:
    stream = TextAssembler()
    joined = "".join(stream.feed(p) for p in _splits(data, cuts)) + stream.flush()
    assert joined == data.decode("utf-8", "replace")


@SETTINGS
@given(st.text(alphabet="abc\n", max_size=60), st.lists(st.text(alphabet="abc\n", min_size=1, max_size=4),
                                                         max_size=3),
       st.lists(st.integers(0, 100), max_size=10))
def test_stop_matching_cuts_at_a_stop_and_never_emits_one(text: str, stops: list[str],
                                                          cuts: list[int]) -> None:
    matcher = TextAssembler(stops)
    out = "".join(matcher.feed(p.encode()) for p in _splits(text, cuts)) + matcher.flush()
    assert text.startswith(out)
    assert not any(s in out for s in stops)  # a stop string (or what follows it) never leaks
    if any(s in text for s in stops):
        assert matcher.stopped and any(text.startswith(s, len(out)) for s in stops)  # cut at a stop
    else:
        assert out == text and not matcher.stopped  # nothing held back at the end


calls = st.lists(st.builds(ToolCall, id=st.text(min_size=1, max_size=5), name=st.text(max_size=5),
                           arguments=st.text(max_size=20)), max_size=3)


@SETTINGS
@given(st.lists(st.tuples(st.text(max_size=10), st.text(max_size=10), st.text(max_size=10)),
                min_size=1, max_size=8))
def test_chat_deltas_rebuild_the_final_message(growth: list[tuple[str, str, str]]) -> None:
    """Messages that only grow (as parsing a longer output does): the deltas re-add to the last."""
    fmt = ChatFormat()
    content = reasoning = args = ""
    old = ChatMessage()
    rebuilt = {"content": "", "reasoning": "", "args": ""}
    for c, r, a in growth:
        content, reasoning, args = content + c, reasoning + r, args + a
        new = ChatMessage(content=content, reasoning_content=reasoning,
                          tool_calls=[ToolCall(id="call_1", name="f", arguments=args)])
        delta = fmt.diff(old, new)
        if delta is not None:
            rebuilt["content"] += delta.content
            rebuilt["reasoning"] += delta.reasoning_content
            rebuilt["args"] += "".join(d.arguments for d in delta.tool_calls)
        old = new
    assert rebuilt == {"content": content, "reasoning": reasoning, "args": args}


@SETTINGS
@given(st.text(max_size=80))
def test_reference_parsing_never_crashes_and_round_trips(text: str) -> None:
    from mr.store import reference as refs

    try:
        ref = refs.parse(text)
    except MrError:
        return  # refused cleanly
    again = refs.parse(refs.normalise(text))
    assert again == ref  # the canonical form names the same thing
    stored = ref.stored
    assert ".." not in stored.split("/") and "\x00" not in stored  # never a path trick
