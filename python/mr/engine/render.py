"""From OpenAI chat inputs (messages, tools, tool_choice, response_format) to a prompt and the
ChatFormat that constrains and parses the answer."""

from __future__ import annotations

import json
import re

from mr import _native
from mr.engine import limits
from mr.engine.chatformat import ChatFormat, NativeFormat
from mr.engine.thinking import budget_fields, template_inputs
from mr.engine.tools import GenericToolFormat, rewrite_messages
from mr.engine.types import ChatOptions
from mr.errors import InvalidArgumentError
from mr.jsontypes import JSON


def render(templates: _native.ChatTemplates, messages: list[JSON],
           options: ChatOptions | None) -> tuple[str, list[str], ChatFormat]:
    opts = options or ChatOptions()
    limits.check_messages(messages)
    schema = response_schema(opts.response_format)
    tools, choice = select_tools(opts.tools, opts.tool_choice)
    limits.check_schema(schema, "response_format")
    limits.check_tools(tools)
    limits.check_schema(opts.chat_template_kwargs, "chat_template_kwargs")
    thinking, kwargs = template_inputs(opts)
    if tools and not templates.caps.get("supports_tools", False):
        required = choice == "required"
        rendered = templates.apply(_dumps(rewrite_messages(messages, tools, required)),
                                   enable_thinking=thinking, template_kwargs_json=kwargs)
        generic = GenericToolFormat(tools, required, opts.parallel_tool_calls)
        generic.budget = budget_fields(opts, rendered, templates.source)
        return rendered.prompt, list(rendered.additional_stops), generic
    rendered = templates.apply(_dumps(messages), _dumps(tools) if tools else "", choice,
                               opts.parallel_tool_calls, _dumps(schema) if schema else "",
                               enable_thinking=thinking, template_kwargs_json=kwargs)
    grammar = rendered.grammar or (_native.json_schema_to_grammar(_dumps(schema)) if schema else "")
    if choice == "required":
        grammar = calls_only(grammar, opts.parallel_tool_calls)
    if tools or rendered.grammar or _reasons(templates):
        fmt: ChatFormat = NativeFormat(rendered, grammar, from_template=bool(rendered.grammar))
    else:
        fmt = ChatFormat(grammar)  # plain content: no per-token parsing cost
    fmt.budget = budget_fields(opts, rendered, templates.source)
    return rendered.prompt, list(rendered.additional_stops), fmt


_FREE_TEXT_FIRST = re.compile(r"^(root ::= .*?) until-\d+\? (tool-calls?)$", re.MULTILINE)
_MANY_CALLS = re.compile(r"^tool-calls ::= \(tool-call space\)\+$", re.MULTILINE)


def calls_only(grammar: str, parallel: bool) -> str:
    """llama.cpp's tool grammars let free text come before the calls even when a call is
    required, so a small model may talk until max_tokens and never call; and they allow several
    calls even when parallel calls are off. Required means required, one means one: the root
    rule loses its optional lead-in and, unless parallel, the call list becomes a single call."""
    grammar = _FREE_TEXT_FIRST.sub(r"\1 \2", grammar, count=1)
    if not parallel:
        grammar = _MANY_CALLS.sub("tool-calls ::= tool-call space", grammar, count=1)
    return grammar


def response_schema(response_format: JSON | None) -> JSON | None:
    """The JSON schema a response_format asks for, or None for free text."""
    if not response_format:
        return None
    kind = response_format.get("type")
    if kind in (None, "text"):
        return None
    if kind == "json_object":
        return response_format.get("schema") or {"type": "object"}
    if kind == "json_schema":
        spec = response_format.get("json_schema") or {}
        schema = spec.get("schema") if isinstance(spec, dict) else None
        return schema if isinstance(schema, dict) else {"type": "object"}
    raise InvalidArgumentError("response_format.type must be text, json_object or json_schema")


def select_tools(tools: list[JSON] | None, tool_choice: str | JSON | None) -> tuple[list[JSON], str]:
    """(tools offered to the model, "auto" | "required" | "none")."""
    if not tools or tool_choice == "none":
        return [], "none"
    if tool_choice in (None, "auto", "required"):
        return list(tools), tool_choice or "auto"
    if isinstance(tool_choice, dict):
        name = (tool_choice.get("function") or {}).get("name")
        chosen = [t for t in tools if (t.get("function") or {}).get("name") == name]
        if not chosen:
            raise InvalidArgumentError(f"tool_choice names a function that is not in tools: {name!r}")
        return chosen, "required"
    raise InvalidArgumentError("tool_choice must be none, auto, required or a named function")


def _reasons(templates: _native.ChatTemplates) -> bool:
    """Templates of reasoning models emit thinking blocks that the parser separates out."""
    source = templates.source
    return "<think>" in source or "reasoning_content" in source


def _dumps(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)
