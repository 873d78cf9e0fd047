"""Size bounds and sanity of chat inputs, checked before anything expensive runs.

Rendering a conversation and turning a JSON schema into a grammar both grow faster than their
input (a schema with many optional properties makes a grammar that is roughly quadratic in size
and slower still to build), so one request could otherwise occupy a thread, and the engine's
grammar compiler, for minutes. Schemas that can never be satisfied (an invalid `pattern`,
`minimum` above `maximum`, ...) and duplicate tool names are refused rather than silently
ignored by the grammar converter. Every refusal is an InvalidArgumentError naming its param.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TypeGuard

from mr.errors import InvalidArgumentError
from mr.jsontypes import JSON

INT32_MAX = 2**31 - 1  # the engine's token counts are 32-bit
# Characters one text to tokenize may have (a prompt, a rendered chat, an input to embed,
# /tokenize's content). llama.cpp's tokenizer takes a few microseconds per token, more in text
# packed with special-token text, so unbounded text would occupy a core for as long as a client
# likes. This much (about 130k tokens of prose: more than a 128k context holds) is about a
# second of one core at most, even in that worst case.
MAX_TEXT_CHARS = 1 << 19
# All the texts of one request together (inputs to embed, documents to rerank, prompts to
# complete): about 260k tokens of prose, near OpenAI's own cap on an embeddings request, and at
# most twice the single text's time.
MAX_REQUEST_CHARS = 1 << 20
MAX_MESSAGES = 2048  # OpenAI's own cap on `messages`
MAX_SCHEMA_DEPTH = 32  # deeper schemas could exhaust the native converter's stack
MAX_SCHEMA_NODES = 4096  # dict entries + list items of one schema (or all tools together)
MAX_PROPERTIES = 256  # per object: the grammar of n optional properties grows ~n^2
MAX_TOOLS = 128


def bad(param: str, message: str) -> InvalidArgumentError:
    err = InvalidArgumentError(message)
    err.param = param
    return err


def check_text(text: str, what: str = "text to tokenize", param: str | None = None) -> None:
    """Refuses text beyond MAX_TEXT_CHARS, before any tokenizing (see there)."""
    if len(text) > MAX_TEXT_CHARS:
        err = InvalidArgumentError(f"the {what} has {len(text):,} characters; at most "
                                   f"{MAX_TEXT_CHARS:,} can be tokenized at once")
        if param is not None:
            err.param = param
        raise err


def check_texts(items: Sequence[object], what: str = "texts") -> None:
    """Refuses requests whose texts (the str items) have more than MAX_REQUEST_CHARS together."""
    total = sum(len(item) for item in items if isinstance(item, str))
    if total > MAX_REQUEST_CHARS:
        raise InvalidArgumentError(f"the {what} have {total:,} characters together; at most "
                                   f"{MAX_REQUEST_CHARS:,} can be tokenized for one request")


def check_messages(messages: Sequence[object]) -> None:
    if len(messages) > MAX_MESSAGES:
        raise bad("messages", f"messages has {len(messages)} entries; at most {MAX_MESSAGES} are accepted")


def check_tools(tools: Sequence[object] | None) -> None:
    if tools and len(tools) > MAX_TOOLS:
        raise bad("tools", f"tools has {len(tools)} entries; at most {MAX_TOOLS} are accepted")
    seen: set[str] = set()
    for tool in tools or []:
        fn = tool.get("function") if isinstance(tool, dict) else None
        name = fn.get("name") if isinstance(fn, dict) else None
        if isinstance(name, str):
            if name in seen:
                raise bad("tools", f"tools has two functions named {name!r}")
            seen.add(name)
    check_schema(tools, "tools")


_RANGES = (("minimum", "maximum"), ("exclusiveMinimum", "exclusiveMaximum"), ("minLength", "maxLength"),
           ("minItems", "maxItems"), ("minProperties", "maxProperties"), ("minContains", "maxContains"))


def _check_node(node: JSON, param: str) -> None:
    pattern = node.get("pattern")
    if isinstance(pattern, str):
        try:
            re.compile(pattern)
        except re.error as exc:
            raise bad(param, f"{param} has an invalid pattern {pattern[:60]!r}: {exc}") from None
    for low, high in _RANGES:
        a, b = node.get(low), node.get(high)
        if _number(a) and _number(b) and a > b:
            raise bad(param, f"{param} has {low} {a} greater than {high} {b}: nothing can match")


def _number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_schema(value: object, param: str) -> None:
    """Depth, node count and properties per object of a schema (or of a list of tools)."""
    stack = [(value, 0)]
    nodes = 0
    while stack:
        item, depth = stack.pop()
        if depth > MAX_SCHEMA_DEPTH:
            raise bad(param, f"{param} is nested too deeply (more than {MAX_SCHEMA_DEPTH} levels)")
        if isinstance(item, dict):
            _check_node(item, param)
            props = item.get("properties")
            if isinstance(props, dict) and len(props) > MAX_PROPERTIES:
                raise bad(param, f"{param} has an object with {len(props)} properties; at most "
                                 f"{MAX_PROPERTIES} are accepted")
            nodes += len(item)
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            nodes += len(item)
            stack.extend((v, depth + 1) for v in item)
        if nodes > MAX_SCHEMA_NODES:
            raise bad(param, f"{param} is too large (more than {MAX_SCHEMA_NODES} schema nodes)")
