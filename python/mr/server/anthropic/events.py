"""Anthropic's streaming event sequence, written from the engine's chat deltas.

message_start, ping, then per content block content_block_start / content_block_delta
(text_delta, thinking_delta, input_json_delta) / content_block_stop, then message_delta (stop
reason and usage) and message_stop. A block is opened when the kind of output changes (thinking,
text, a new tool call) and closed when the next one opens or the message ends.
"""

from __future__ import annotations

import msgspec

from mr.engine import ChatDelta, Usage
from mr.jsontypes import JSON
from mr.server.anthropic import convert
from mr.server.anthropic.protocol import ErrorDetail, ErrorOut, MessageOut

_encode = msgspec.json.Encoder().encode
PING = b'event: ping\ndata: {"type":"ping"}\n\n'


def frame(name: str, payload: object) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + _encode(payload) + b"\n\n"


def error_frame(kind: str, message: str) -> bytes:
    return frame("error", ErrorOut(error=ErrorDetail(type=kind, message=message)))


class EventWriter:
    """The frames of one streamed message. Feed deltas in order, then `end`."""

    def __init__(self, message_id: str, model: str) -> None:
        self._id = message_id
        self._model = model
        self._index = -1  # the open block's index, -1 before the first
        self._kind: str | None = None  # "thinking" | "text" | "tool_use" | None (no block open)
        self._tool_index: int | None = None  # the engine's index of the open tool call
        self.started = False

    def start(self, usage: Usage) -> bytes:
        self.started = True
        message = MessageOut(id=self._id, model=self._model, content=[], stop_reason=None,
                             stop_sequence=None, usage=convert.usage(usage))
        return frame("message_start", {"type": "message_start", "message": message}) + PING

    def delta(self, delta: ChatDelta) -> list[bytes]:
        out: list[bytes] = []
        if delta.reasoning_content:
            out += self._open("thinking", {"type": "thinking", "thinking": "", "signature": ""})
            out.append(self._block_delta({"type": "thinking_delta", "thinking": delta.reasoning_content}))
        if delta.content:
            out += self._open("text", {"type": "text", "text": ""})
            out.append(self._block_delta({"type": "text_delta", "text": delta.content}))
        for call in delta.tool_calls:
            if call.index != self._tool_index or self._kind != "tool_use":
                out += self._close()
                block = {"type": "tool_use", "id": call.id or "", "name": call.name or "", "input": {}}
                out += self._open("tool_use", block)
                self._tool_index = call.index
            if call.arguments:
                out.append(self._block_delta({"type": "input_json_delta", "partial_json": call.arguments}))
        return out

    def end(self, stop_reason: str, stop_sequence: str | None, usage: Usage) -> list[bytes]:
        out = self._close()
        out.append(frame("message_delta", {
            "type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": stop_sequence},
            "usage": convert.usage(usage),
        }))
        out.append(frame("message_stop", {"type": "message_stop"}))
        return out

    def _open(self, kind: str, block: JSON) -> list[bytes]:
        if self._kind == kind and kind != "tool_use":
            return []
        out = self._close()
        self._index += 1
        self._kind = kind
        out.append(frame("content_block_start", {"type": "content_block_start", "index": self._index,
                                                 "content_block": block}))
        return out

    def _close(self) -> list[bytes]:
        if self._kind is None:
            return []
        self._kind, self._tool_index = None, None
        return [frame("content_block_stop", {"type": "content_block_stop", "index": self._index})]

    def _block_delta(self, delta: JSON) -> bytes:
        return frame("content_block_delta", {"type": "content_block_delta", "index": self._index,
                                             "delta": delta})
