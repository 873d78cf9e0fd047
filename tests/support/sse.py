"""Parse a raw SSE body strictly (what a picky client would accept)."""

from __future__ import annotations

import json
from typing import Any


def parse_sse(raw: bytes) -> tuple[list[dict[str, Any]], bool]:
    """(the JSON payloads, whether the stream ended with [DONE]). Raises on any malformed frame."""
    text = raw.decode("utf-8")  # strict: every chunk must be valid UTF-8
    frames = text.split("\n\n")
    assert frames[-1] == "", "the stream must end with a blank line"
    payloads, done = [], False
    for frame in frames[:-1]:
        assert frame.startswith("data: "), f"not an SSE data frame: {frame[:80]!r}"
        assert not done, "nothing may follow [DONE]"
        data = frame[len("data: "):]
        if data == "[DONE]":
            done = True
            continue
        assert "\ufffd" not in data, "a character split across tokens was sent as U+FFFD"
        payloads.append(json.loads(data))
    return payloads, done
