"""The Responses API's streaming events, written from the engine's chat deltas.

response.created and response.in_progress; per output item output_item.added, then for a
message content_part.added / output_text.delta / output_text.done / content_part.done, for a
function call function_call_arguments.delta / .done, for reasoning reasoning_text.delta / .done;
output_item.done; finally response.completed, response.incomplete or response.failed. Every event
carries a `sequence_number` that increases by one. An item is opened when the kind of output
changes and closed when the next one opens or the response ends.
"""

from __future__ import annotations

import msgspec

from mr.engine import ChatDelta
from mr.jsontypes import JSON
from mr.server.generation import new_id
from mr.server.responses import output

_encode = msgspec.json.Encoder().encode


class _Open:
    """The output item being streamed."""

    def __init__(self, kind: str, item: JSON, tool_index: int | None = None) -> None:
        self.kind = kind  # "message" | "function_call" | "reasoning"
        self.item = item
        self.tool_index = tool_index
        self.text = ""


class ResponseEvents:
    def __init__(self, skeleton: output.Skeleton) -> None:
        self._skeleton = skeleton
        self._seq = 0
        self._open: _Open | None = None
        self.items: list[JSON] = []  # the closed output items, in order

    def frame(self, kind: str, **fields: object) -> bytes:
        payload = {"type": kind, "sequence_number": self._seq, **fields}
        self._seq += 1
        return b"event: " + kind.encode() + b"\ndata: " + _encode(payload) + b"\n\n"

    def start(self) -> list[bytes]:
        response = self._skeleton.response("in_progress", [])
        return [self.frame("response.created", response=response),
                self.frame("response.in_progress", response=response)]

    def delta(self, delta: ChatDelta) -> list[bytes]:
        out: list[bytes] = []
        if delta.reasoning_content:
            out += self._ensure("reasoning")
            out.append(self._text_delta("response.reasoning_text.delta", delta.reasoning_content))
        if delta.content:
            out += self._ensure("message")
            out.append(self._text_delta("response.output_text.delta", delta.content))
        for call in delta.tool_calls:
            current = self._open
            if current is None or current.kind != "function_call" or current.tool_index != call.index:
                out += self._close("completed")
                out += self._begin(_Open("function_call", output.call_item(
                    call.id or new_id("call"), call.name or "", "", "in_progress"), call.index))
            if call.arguments:
                assert self._open is not None
                self._open.text += call.arguments
                out.append(self.frame("response.function_call_arguments.delta",
                                      item_id=self._open.item["id"], output_index=len(self.items),
                                      delta=call.arguments))
        return out

    def end(self, status: str, response: JSON) -> list[bytes]:
        """The last event, carrying `response` (whose output is `self.items`, once closed)."""
        kind = {"completed": "response.completed", "incomplete": "response.incomplete"}[status]
        return [self.frame(kind, response=response)]

    def close(self, item_status: str) -> list[bytes]:
        """Close the item being streamed (`item_status`: completed, or incomplete at a limit)."""
        return self._close(item_status)

    def empty_message(self) -> list[bytes]:
        """An empty message item: a response always says something, even nothing."""
        return self._ensure("message") + self._close("completed")

    def failed(self, error: dict[str, str]) -> bytes:
        response = self._skeleton.response("failed", self.items, error=error)
        return self.frame("response.failed", response=response)

    # ---- items ----

    def _ensure(self, kind: str) -> list[bytes]:
        if self._open is not None and self._open.kind == kind:
            return []
        out = self._close("completed")
        if kind == "message":
            item = output.message_item("", "in_progress")
            item["content"] = []
        else:
            item = output.reasoning_item("")
            item["content"] = []
        return out + self._begin(_Open(kind, item))

    def _begin(self, current: _Open) -> list[bytes]:
        self._open = current
        index = len(self.items)
        out = [self.frame("response.output_item.added", output_index=index, item=current.item)]
        if current.kind == "message":
            out.append(self.frame("response.content_part.added", item_id=current.item["id"],
                                  output_index=index, content_index=0, part=output.text_part("")))
        return out

    def _text_delta(self, kind: str, text: str) -> bytes:
        assert self._open is not None
        self._open.text += text
        return self.frame(kind, item_id=self._open.item["id"], output_index=len(self.items), content_index=0,
                          delta=text, **({"logprobs": []} if kind == "response.output_text.delta" else {}))

    def _close(self, status: str) -> list[bytes]:
        current, self._open = self._open, None
        if current is None:
            return []
        index, item_id, item, text = len(self.items), current.item["id"], current.item, current.text
        out: list[bytes] = []
        if current.kind == "message":
            done = output.message_item(text, status, item_id)
            out.append(self.frame("response.output_text.done", item_id=item_id, output_index=index,
                                  content_index=0, text=text, logprobs=[]))
            out.append(self.frame("response.content_part.done", item_id=item_id, output_index=index,
                                  content_index=0, part=output.text_part(text)))
        elif current.kind == "function_call":
            done = output.call_item(item["call_id"], item["name"], text, "completed", item_id)
            out.append(self.frame("response.function_call_arguments.done", item_id=item_id,
                                  output_index=index, name=item["name"], arguments=text))
        else:
            done = output.reasoning_item(text, item_id)
            out.append(self.frame("response.reasoning_text.done", item_id=item_id, output_index=index,
                                  content_index=0, text=text))
        out.append(self.frame("response.output_item.done", output_index=index, item=done))
        self.items.append(done)
        return out
