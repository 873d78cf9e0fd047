"""Tool calls for chat templates that cannot express tools (SmolLM2's among them).

llama.cpp's common library renders no tools for such a template and builds no grammar, so
`tool_choice: "required"` would be silently ignored. mr instead describes the tools in the
system message, asks for a JSON object `{"tool_calls": [{"name", "arguments"}]}`, constrains
sampling with a grammar built from the tool schemas when a call is required, and parses the
output back into tool calls.
"""

from __future__ import annotations

import json
from typing import Any

from mr import _native
from mr.engine.chatformat import ChatFormat
from mr.engine.types import ChatDelta, ChatMessage, ToolCall, ToolCallDelta
from mr.errors import InvalidArgumentError
from mr.jsontypes import JSON

MAX_PARALLEL_CALLS = 4
# A forced call must end: a small model may otherwise fill an unbounded string or array argument
# until max_tokens and the reply never parses. Limits the tool's schema leaves open are closed.
MAX_ARG_STRING = 256
MAX_ARG_ITEMS = 16


def bounded(schema: Any) -> Any:
    """`schema` with a length bound on every open-ended string and array (a copy)."""
    if isinstance(schema, list):
        return [bounded(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: bounded(v) if k in _SUBSCHEMAS else v for k, v in schema.items()}
    for key in ("properties", "$defs", "definitions", "patternProperties"):
        if isinstance(schema.get(key), dict):
            out[key] = {name: bounded(sub) for name, sub in schema[key].items()}
    kinds = schema.get("type")
    kinds = kinds if isinstance(kinds, list) else [kinds]
    free = not ({"enum", "const", "pattern", "format", "$ref"} & schema.keys())
    if "string" in kinds and free and "maxLength" not in schema:
        out["maxLength"] = MAX_ARG_STRING
    if "array" in kinds and "maxItems" not in schema and "prefixItems" not in schema:
        out["maxItems"] = MAX_ARG_ITEMS
    if kinds == ["object"] and not ({"properties", "additionalProperties", "$ref"} & schema.keys()):
        out["additionalProperties"] = _FREE_VALUE  # a free-form object: any JSON, but bounded
    return out


_SCALARS: list[JSON] = [{"type": "string", "maxLength": MAX_ARG_STRING}, {"type": "number"},
                                  {"type": "boolean"}, {"type": "null"}]
_FREE_VALUE = {"anyOf": [*_SCALARS,
                         {"type": "array", "items": {"anyOf": _SCALARS}, "maxItems": MAX_ARG_ITEMS}]}


_SUBSCHEMAS = {"items", "additionalProperties", "anyOf", "oneOf", "allOf", "not"}


def tool_schema(tools: list[JSON], parallel: bool) -> JSON:
    """The JSON schema of a reply that calls one (or, if parallel, several) of `tools`."""
    calls = [
        {
            "type": "object",
            "properties": {
                "name": {"const": _function(t)["name"]},
                "arguments": bounded(_function(t).get("parameters") or {"type": "object"}),
            },
            "required": ["name", "arguments"],
            "additionalProperties": False,
        }
        for t in tools
    ]
    # Parallel calls are bounded too: a small model may otherwise repeat a call until max_tokens
    # and never close the JSON.
    array: JSON = {"type": "array", "items": {"anyOf": calls}, "minItems": 1,
                             "maxItems": MAX_PARALLEL_CALLS if parallel else 1}
    return {"type": "object", "properties": {"tool_calls": array}, "required": ["tool_calls"],
            "additionalProperties": False}


def system_text(tools: list[JSON], required: bool) -> str:
    lines = ["You can call the following tools. Each is described as JSON:"]
    for tool in tools:
        fn = _function(tool)
        lines.append(json.dumps({"name": fn["name"], "description": fn.get("description", ""),
                                 "parameters": fn.get("parameters") or {}}, ensure_ascii=False))
    lines.append('To call tools, reply with only a JSON object: {"tool_calls": [{"name": "<tool name>", '
                 '"arguments": {<arguments>}}]}.')
    lines.append("You must call a tool now." if required else "If no tool is needed, answer normally.")
    return "\n".join(lines)


def rewrite_messages(messages: list[JSON], tools: list[JSON],
                     required: bool) -> list[JSON]:
    """The conversation as plain text messages the template can render."""
    out: list[JSON] = []
    for m in messages:
        if m.get("role") == "assistant" and m.get("tool_calls"):
            calls = [{"name": c["function"]["name"], "arguments": _arguments(c["function"].get("arguments"))}
                     for c in m["tool_calls"]]
            out.append({"role": "assistant", "content": json.dumps({"tool_calls": calls})})
        elif m.get("role") == "tool":
            out.append({"role": "user", "content": f"Tool result: {_text(m.get('content'))}"})
        else:
            out.append(m)
    intro = system_text(tools, required)
    if out and out[0].get("role") == "system":
        out[0] = {"role": "system", "content": f"{_text(out[0].get('content'))}\n\n{intro}"}
    else:
        out.insert(0, {"role": "system", "content": intro})
    return out


class GenericToolFormat(ChatFormat):
    """Parses `{"tool_calls": [...]}` replies; other replies are content. Which of the two a reply
    is shows at its first non-blank character: content then streams piece by piece, a call is
    held back and parsed once, at the end (O(1) per piece either way)."""

    def __init__(self, tools: list[JSON], required: bool, parallel: bool) -> None:
        grammar = _native.json_schema_to_grammar(json.dumps(tool_schema(tools, parallel))) if required else ""
        super().__init__(grammar)
        self._names = {_function(t)["name"] for t in tools}
        self._reset()

    def _reset(self) -> None:
        super()._reset()
        self._call: bool | None = None  # None: only blanks so far
        self._calls_found: list[ToolCall] = []

    def feed(self, piece: str, final: bool) -> ChatDelta | None:
        if self._call is None:
            self._pieces.append(piece)
            lead = "".join(self._pieces)
            if not lead.strip() and not final:
                return None  # blanks: either kind may follow
            self._call = lead.lstrip().startswith("{")
            self._pieces = []
            piece = lead
        if not self._call:
            return super().feed(piece, final)
        self._pieces.append(piece)
        if not final:
            return None  # maybe a tool call: held back until the reply is complete
        text = "".join(self._pieces)
        self._calls_found = self._calls(text.lstrip())
        if not self._calls_found:
            self._call = False
            return ChatDelta(content=text) if text else None
        return ChatDelta(tool_calls=[ToolCallDelta(index=i, id=c.id, name=c.name, arguments=c.arguments)
                                     for i, c in enumerate(self._calls_found)])

    def message(self) -> ChatMessage:
        if self._call and self._calls_found:
            return ChatMessage(tool_calls=self._calls_found)
        return super().message() if not self._call else ChatMessage()

    def parse(self, text: str, partial: bool) -> ChatMessage:
        stripped = text.lstrip()
        if not stripped.startswith("{"):
            return ChatMessage(content=text)
        if partial:
            return ChatMessage()
        calls = self._calls(stripped)
        return ChatMessage(tool_calls=calls) if calls else ChatMessage(content=text)

    def _calls(self, text: str) -> list[ToolCall]:
        try:
            data = json.loads(text)
        except ValueError:
            return []
        raw = data.get("tool_calls") if isinstance(data, dict) else None
        if not isinstance(raw, list):
            return []
        calls = []
        for i, call in enumerate(raw):
            if not isinstance(call, dict) or call.get("name") not in self._names:
                return []
            args = call.get("arguments", {})
            calls.append(ToolCall(id=self.call_id(i), name=call["name"],
                                  arguments=json.dumps(args, ensure_ascii=False)))
        return calls


def _function(tool: JSON) -> JSON:
    fn = tool.get("function") if isinstance(tool, dict) else None
    if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
        raise InvalidArgumentError("each tool needs a function with a name")
    return fn


def _arguments(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _text(content: object) -> str:
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return "" if content is None else str(content)
