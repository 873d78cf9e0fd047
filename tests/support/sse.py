"""Parse a raw SSE body strictly (what a picky client would accept)."""

from __future__ import annotations

import json
from typing import Any


def parse_sse(raw: bytes, random_weights: bool = False) -> tuple[list[dict[str, Any]], bool]:
    """(the JSON payloads, whether the stream ended with [DONE]). Raises on any malformed frame.

    With `random_weights` (ai/tiny), U+FFFD is allowed: 313 of SmolLM2's 49,152 tokens are not
    valid UTF-8 alone, and a random model picks them in orders no text has, which the server
    rightly sends as U+FFFD (Python's "replace"). A real model on real text never needs it."""
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
        assert random_weights or "\ufffd" not in data, "a character split across tokens was sent as U+FFFD"
        payloads.append(json.loads(data))
    return payloads, done
