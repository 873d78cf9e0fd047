"""How one chat request's prompt was rendered, and how the model's answer is parsed back.

Rendering and parsing use llama.cpp's common chat library (the code llama-server runs) through
the native module; this module turns its results into mr's message types and computes deltas.
"""

from __future__ import annotations

from mr.engine.options import SamplingOptions
from mr.engine.types import ChatDelta, ChatMessage, ToolCallDelta


class ChatFormat:
    """Content-only format: the whole output is the assistant's content."""

    def sampling(self, sampling: SamplingOptions | None) -> SamplingOptions | None:
        """The request's sampling, plus the grammar this format constrains it with (if any)."""
        return sampling

    def parse(self, text: str, partial: bool) -> ChatMessage:
        return ChatMessage(content=text)

    def diff(self, old: ChatMessage, new: ChatMessage) -> ChatDelta | None:
        """What `new` adds to `old`; None when nothing changed."""
        delta = ChatDelta(
            content=_suffix(old.content, new.content),
            reasoning_content=_suffix(old.reasoning_content, new.reasoning_content),
            tool_calls=_tool_call_deltas(old, new),
        )
        if not (delta.content or delta.reasoning_content or delta.tool_calls):
            return None
        return delta


def _suffix(old: str, new: str) -> str:
    # A partial parse may revise text it held back; only ever append what extends the old text.
    return new[len(old):] if new.startswith(old) else ""


def _tool_call_deltas(old: ChatMessage, new: ChatMessage) -> list[ToolCallDelta]:
    out: list[ToolCallDelta] = []
    for i, call in enumerate(new.tool_calls):
        if i >= len(old.tool_calls):
            out.append(ToolCallDelta(index=i, id=call.id, name=call.name, arguments=call.arguments))
            continue
        added = _suffix(old.tool_calls[i].arguments, call.arguments)
        if added:
            out.append(ToolCallDelta(index=i, arguments=added))
    return out
