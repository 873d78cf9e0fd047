"""Tools and output format for the chat template: one rule for every API.

Each API writes its tools and tool choice in OpenAI's shape (the one chat rendering takes) and
hands them here with what its request said about parallel calls. The copies this replaced had
drifted: OpenAI chat allowed one call unless asked, Anthropic and the Responses API several by
default, and with several allowed a small model repeats a forced call until the grammar's cap (an
agent runs the tool that many times) or, at a low max_tokens, is cut off before the call list
closes and the reply is not a call at all.
"""

from __future__ import annotations

from mr.engine import ChatOptions
from mr.jsontypes import JSON


def parallel_calls(asked: bool | None) -> bool:
    """Whether one answer may hold several tool calls: only where the request asks for them
    (OpenAI's and the Responses API's `parallel_tool_calls: true`, Anthropic's
    `disable_parallel_tool_use: false`). Unsaid (and in Ollama's API, which cannot say it), one
    call, as llama-server does."""
    return asked is True


def tool_options(tools: list[JSON] | None, tool_choice: str | JSON | None,
                 parallel: bool | None, response_format: JSON | None = None) -> ChatOptions | None:
    """ChatOptions for OpenAI-shaped `tools` and `tool_choice` ("none", "auto", "required" or a
    named function) and a response format; None when there is neither tool nor format.
    `parallel`: what the request said about parallel calls (None: nothing)."""
    if not tools and response_format is None:
        return None
    return ChatOptions(tools=[_shaped(t) for t in tools] if tools else None,
                       tool_choice=tool_choice if tools else None,
                       parallel_tool_calls=parallel_calls(parallel), response_format=response_format)


def _shaped(tool: JSON) -> JSON:
    """A tool as the template sees it, written alike whichever API it came from: its fields in
    one order, the unset ones left out (OpenAI's body carries them as null, and a template that
    writes the tools out would show them)."""
    function = tool.get("function") if isinstance(tool, dict) else None
    if not isinstance(function, dict):
        return tool  # the engine names what is wrong with it
    return {"type": tool.get("type", "function"),
            "function": {key: value for key, value in function.items() if value is not None}}
