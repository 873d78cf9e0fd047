"""How one chat request's prompt was rendered, and how the model's answer is parsed back.

NativeFormat wraps llama.cpp's common chat library (the code llama-server runs): the template's
own tool-call syntax, grammar and parser. GenericToolFormat (mr.engine.tools) takes over for
templates that cannot express tools. ChatFormat itself is plain content.

A format is fed the answer piece by piece (`feed`) and keeps the message so far (`message`).
Plain content and mr's generic tool format cost O(1) per piece. llama.cpp's parser has no
incremental mode, so NativeFormat re-parses the whole answer, but only at pieces that could
change its structure: a piece of plain words extends the reasoning, content or tool-call
arguments it follows without the parser, so a long reasoning block or tool call costs one parse
per markup piece (tags, brackets, quotes where the template's parser escapes them), not one per
token.
"""

from __future__ import annotations

import copy
import json
import re
import secrets

import msgspec

from mr import _native
from mr.engine.options import SamplingOptions
from mr.engine.types import ChatDelta, ChatMessage, ToolCall, ToolCallDelta
from mr.jsontypes import JSON

# A piece of only these characters can neither open nor close any template's markup (tags, tool-call
# markers and JSON all need one of <>[]{}|, a newline or a special token): it extends the field the
# answer is in. One ending in a space is left to the parser, which may hold trailing spaces back.
_INERT = re.compile(r"[\w .,;:!?'\"()-]*[\w.,;:!?'\"()-]")
# In tool-call arguments a quote is structure too: a template whose parser builds the JSON from its
# own syntax escapes it. Once a parse has shown a quote arriving in the arguments as it was (the
# model writes the JSON itself), quotes are inert there as well.
_INERT_ARGUMENT = re.compile(r"[\w .,;:!?'()-]*[\w.,;:!?'()-]")
_MIN_CONTENT = 8  # some templates open a tool call with a word at the answer's start


class ChatFormat:
    """Plain content, optionally constrained by a grammar (response_format)."""

    def __init__(self, grammar: str = "") -> None:
        self.grammar = grammar
        self.budget: dict[str, object] = {}  # SamplingOptions' reasoning_* fields, when capped
        self._call_ids: list[str] = []
        self._pieces: list[str] = []  # plain content, joined on demand (never once per piece)

    @property
    def plain(self) -> bool:
        """Content only (maybe grammar-constrained): every piece of text is its own delta."""
        return type(self) is ChatFormat

    def fresh(self) -> ChatFormat:
        """A copy without parsing state, for another answer to the same prompt."""
        clone = copy.copy(self)
        clone._reset()
        return clone

    def _reset(self) -> None:
        self._call_ids = []
        self._pieces = []

    def feed(self, piece: str, final: bool) -> ChatDelta | None:
        """What `piece` (the answer's next text; "" with `final` at the end) adds to the message."""
        if not piece:
            return None
        self._pieces.append(piece)
        return ChatDelta(content=piece)

    def message(self) -> ChatMessage:
        """The assistant message so far (whole once fed the final piece)."""
        return ChatMessage(content="".join(self._pieces))

    def sampling(self, sampling: SamplingOptions | None) -> SamplingOptions | None:
        """The request's sampling, plus the grammar this format constrains it with (if any)."""
        if not self.grammar:
            return self.capped(sampling)
        return self.capped(msgspec.structs.replace(sampling or SamplingOptions(), grammar=self.grammar))

    def capped(self, sampling: SamplingOptions | None) -> SamplingOptions | None:
        """`sampling` with the reasoning budget, if one was asked for."""
        if not self.budget:
            return sampling
        return msgspec.structs.replace(sampling or SamplingOptions(), **self.budget)

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

    def call_id(self, index: int) -> str:
        """A stable id per tool call position (models rarely produce ids of their own)."""
        while len(self._call_ids) <= index:
            self._call_ids.append("call_" + secrets.token_hex(12))
        return self._call_ids[index]


class NativeFormat(ChatFormat):
    """The template's own format, rendered and parsed by llama.cpp's common chat library."""

    def __init__(self, prompt: _native.ChatPrompt, grammar: str, from_template: bool) -> None:
        super().__init__(grammar)
        self._prompt = prompt
        self._from_template = from_template  # the chat library built it: it covers the prompt's tail
        self._reset()

    def _reset(self) -> None:
        super()._reset()
        self._last = ChatMessage()  # the last parse that succeeded
        self._chunks: list[str] = []  # the answer so far, joined only to parse it
        self._sofar = ChatMessage()  # the message, but for the pieces in _pending
        self._growing: str | None = None  # the field the last pieces extended as they were
        self._pending: list[str] = []  # pieces appended to that field since _sofar was built
        self._raw_quotes = False  # a quote reached the arguments unescaped: the model writes the JSON

    def feed(self, piece: str, final: bool) -> ChatDelta | None:
        self._chunks.append(piece)
        field = self._growing
        if not final and field is not None and self._extends(field, piece):
            self._pending.append(piece)
            return _delta(field, piece, len(self._sofar.tool_calls) - 1)
        old = self.message()
        message = self.parse("".join(self._chunks), partial=not final)
        self._growing = _grown(old, message, piece)
        self._raw_quotes = self._raw_quotes or (self._growing == "arguments" and '"' in piece)
        self._sofar = message
        return self.diff(old, message)

    def _extends(self, field: str, piece: str) -> bool:
        if field == "arguments":
            return (_INERT if self._raw_quotes else _INERT_ARGUMENT).fullmatch(piece) is not None
        if _INERT.fullmatch(piece) is None:
            return False
        return field == "reasoning_content" or len(self._sofar.content) >= _MIN_CONTENT

    def message(self) -> ChatMessage:
        if self._pending:
            assert self._growing is not None
            self._sofar = self._last = _extended(self._sofar, self._growing, "".join(self._pending))
            self._pending.clear()
        return self._sofar

    def sampling(self, sampling: SamplingOptions | None) -> SamplingOptions | None:
        if not self.grammar:
            return self.capped(sampling)
        p = self._prompt
        lazy = self._from_template and p.grammar_lazy
        return self.capped(msgspec.structs.replace(
            sampling or SamplingOptions(), grammar=self.grammar, grammar_lazy=lazy,
            trigger_patterns=list(p.trigger_patterns) if lazy else [],
            trigger_tokens=list(p.trigger_tokens) if lazy else [],
            grammar_prefill=p.generation_prompt if self._from_template and not lazy else "",
        ))

    def parse(self, text: str, partial: bool) -> ChatMessage:
        try:
            raw = json.loads(self._prompt.parser.parse(text, partial))
        except Exception:
            if partial:
                return self._last  # mid-way through a construct the parser cannot read yet
            return ChatMessage(content=text)
        self._last = self._message(raw)
        return self._last

    def _message(self, raw: JSON) -> ChatMessage:
        calls = []
        for i, call in enumerate(raw.get("tool_calls") or []):
            fn = call.get("function") or {}
            calls.append(ToolCall(id=call.get("id") or self.call_id(i), name=fn.get("name", ""),
                                  arguments=fn.get("arguments", "")))
        return ChatMessage(content=raw.get("content") or "",
                           reasoning_content=raw.get("reasoning_content") or "", tool_calls=calls)


def _grown(old: ChatMessage, new: ChatMessage, piece: str) -> str | None:
    """The field `piece` was appended to as it was, if that is all the parse changed: content,
    reasoning_content, or the last tool call's arguments."""
    if not piece:
        return None
    if old.tool_calls or new.tool_calls:
        same = new.content == old.content and new.reasoning_content == old.reasoning_content
        n = len(new.tool_calls)
        if not same or n != len(old.tool_calls) or new.tool_calls[:n - 1] != old.tool_calls[:n - 1]:
            return None
        last, before = new.tool_calls[-1], old.tool_calls[-1]
        grew = (last.id, last.name, last.arguments) == (before.id, before.name, before.arguments + piece)
        return "arguments" if grew else None
    if new.content == old.content and new.reasoning_content == old.reasoning_content + piece:
        return "reasoning_content"
    if new.reasoning_content == old.reasoning_content and new.content == old.content + piece:
        return "content"
    return None


def _extended(message: ChatMessage, field: str, text: str) -> ChatMessage:
    """`message` with `text` appended to `field` (as _grown names it)."""
    if field != "arguments":
        return msgspec.structs.replace(message, **{field: getattr(message, field) + text})
    *calls, last = message.tool_calls
    return msgspec.structs.replace(
        message, tool_calls=[*calls, msgspec.structs.replace(last, arguments=last.arguments + text)])


def _delta(field: str, piece: str, last_call: int) -> ChatDelta:
    if field == "arguments":
        return ChatDelta(tool_calls=[ToolCallDelta(index=last_call, arguments=piece)])
    return msgspec.structs.replace(ChatDelta(), **{field: piece})


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
