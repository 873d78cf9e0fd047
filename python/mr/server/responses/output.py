"""The Response object and its output items (message, function_call, reasoning), as plain dicts:
the same values are sent, stored and returned by GET /v1/responses/{id}."""

from __future__ import annotations

import time

import msgspec

from mr.engine import ChatMessage, Usage
from mr.jsontypes import JSON
from mr.server.generation import new_id, parallel_calls
from mr.server.responses import convert
from mr.server.responses.protocol import (
    InputTokensDetails,
    OutputTokensDetails,
    ResponseRequest,
    ResponseUsage,
)


def message_item(text: str, status: str = "completed", item_id: str | None = None) -> JSON:
    return {"type": "message", "id": item_id or new_id("msg"), "status": status, "role": "assistant",
            "content": [text_part(text)]}


def text_part(text: str) -> JSON:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def call_item(call_id: str, name: str, arguments: str, status: str = "completed",
              item_id: str | None = None) -> JSON:
    return {"type": "function_call", "id": item_id or new_id("fc"), "call_id": call_id, "name": name,
            "arguments": arguments, "status": status}


def reasoning_item(text: str, item_id: str | None = None) -> JSON:
    return {"type": "reasoning", "id": item_id or new_id("rs"), "summary": [],
            "content": [{"type": "reasoning_text", "text": text}]}


def items(message: ChatMessage, incomplete: bool) -> list[JSON]:
    out = [reasoning_item(message.reasoning_content)] if message.reasoning_content else []
    if message.content or not message.tool_calls:
        out.append(message_item(message.content, "incomplete" if incomplete else "completed"))
    out += [call_item(c.id, c.name, c.arguments) for c in message.tool_calls]
    return out


def usage(u: Usage) -> ResponseUsage:
    return ResponseUsage(input_tokens=u.prompt_tokens, output_tokens=u.completion_tokens,
                         total_tokens=u.prompt_tokens + u.completion_tokens,
                         input_tokens_details=InputTokensDetails(cached_tokens=u.cached_tokens),
                         output_tokens_details=OutputTokensDetails())


class Skeleton:
    """What a Response object says about its request: fixed when the request arrives."""

    def __init__(self, req: ResponseRequest) -> None:
        self.id = new_id("resp")
        self.created_at = int(time.time())
        choice = req.tool_choice
        self._fields: JSON = {
            "instructions": req.instructions, "max_output_tokens": req.max_output_tokens,
            "model": req.model, "parallel_tool_calls": parallel_calls(req.parallel_tool_calls),
            "previous_response_id": req.previous_response_id, "temperature": req.temperature,
            "top_p": req.top_p, "tool_choice": msgspec.to_builtins(choice) if choice is not None else "auto",
            "tools": msgspec.to_builtins(req.tools or []), "text": convert.text_config(req),
            "truncation": "disabled", "metadata": req.metadata or {}, "store": req.store, "user": req.user,
        }

    def response(self, status: str, output: list[JSON], u: Usage | None = None,
                 incomplete_reason: str | None = None, error: dict[str, str] | None = None) -> JSON:
        return {
            "id": self.id, "object": "response", "created_at": self.created_at, "status": status,
            "error": error,
            "incomplete_details": {"reason": incomplete_reason} if incomplete_reason else None,
            "output": output, "usage": msgspec.to_builtins(usage(u)) if u is not None else None,
            **self._fields,
        }


def status_of(finish: str | None) -> tuple[str, str | None]:
    """(status, incomplete_details.reason) for an engine finish reason."""
    if finish == "length":
        return "incomplete", "max_output_tokens"
    return "completed", None
