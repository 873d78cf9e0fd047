"""Anthropic requests -> the engine's chat arguments, and engine results -> Anthropic's fields.

The conversation becomes OpenAI-shaped messages, the form the chat rendering (templates, tool
formats, grammars) already takes: `tool_use` blocks become assistant tool calls, `tool_result`
blocks tool messages, `thinking` blocks reasoning content. `tool_choice` any/tool is OpenAI's
"required" / a named function, under the one tool rule of mr.server.generation.tools.
"""

from __future__ import annotations

import json

from mr.engine import ChatMessage, ChatOptions, Usage
from mr.jsontypes import JSON
from mr.server.anthropic.protocol import (
    Block,
    BlockOut,
    ImageBlock,
    MessageParam,
    MessagesRequest,
    PromptFields,
    StopReason,
    TextBlock,
    TextOut,
    ThinkingBlock,
    ThinkingOut,
    ToolChoiceAny,
    ToolChoiceNone,
    ToolChoiceTool,
    ToolResultBlock,
    ToolUseBlock,
    ToolUseOut,
    UrlSource,
    UsageOut,
)
from mr.server.errors import invalid
from mr.server.generation import Chat, Prepared, checked_text, media, same_sampling, sampling_of, tool_options
from mr.server.thinking import Thinking


def prepare(req: MessagesRequest) -> Prepared[Chat]:
    stops = [checked_text(s, "stop_sequences") for s in req.stop_sequences or []]
    return Prepared(model=req.model, input=chat(req), sampling=same_sampling(sampling_of(req)),
                    fields=req, max_tokens=req.max_tokens, stop=stops, ignore_eos=req.ignore_eos)


def chat(req: PromptFields) -> Chat:
    """The prompt of a request (count_tokens counts just this)."""
    return Chat(messages(req), options(req), thinking(req))


def thinking(req: PromptFields) -> Thinking:
    """`thinking`: enabled (with its token budget) or adaptive turn it on, disabled off; absent,
    the model's configured default holds."""
    config = req.thinking
    if config is None:
        return Thinking()
    budget = config.budget_tokens if config.type == "enabled" else None
    return Thinking(enable=config.type != "disabled", budget=budget)


def messages(req: PromptFields) -> list[JSON]:
    out: list[JSON] = []
    system = _system(req.system)
    if system:
        out.append({"role": "system", "content": system})
    for i, m in enumerate(req.messages):
        out.extend(_message(i, m))
    return out


def _system(system: str | list[TextBlock] | None) -> str:
    if system is None:
        return ""
    if isinstance(system, str):
        return checked_text(system, "system")
    return "\n".join(checked_text(b.text, "system") for b in system)


def _message(i: int, m: MessageParam) -> list[JSON]:
    param = f"messages[{i}].content"
    if isinstance(m.content, str):
        return [{"role": m.role, "content": checked_text(m.content, param)}]
    if m.role == "assistant":
        return [_assistant(m.content, param)]
    return _user(m.content, param)


def _assistant(blocks: list[Block], param: str) -> JSON:
    texts, thinking, calls = [], [], []
    for j, block in enumerate(blocks):
        if isinstance(block, ImageBlock):
            raise invalid(f"{param}[{j}]", f"{param}[{j}]: image blocks belong in user messages")
        if isinstance(block, TextBlock):
            texts.append(checked_text(block.text, param))
        elif isinstance(block, ThinkingBlock):
            thinking.append(checked_text(block.thinking, param))
        elif isinstance(block, ToolUseBlock):
            calls.append({"id": block.id, "type": "function",
                          "function": {"name": block.name, "arguments": json.dumps(block.input)}})
        elif isinstance(block, ToolResultBlock):
            raise invalid(param, f"{param}: tool_result blocks belong in user messages")
    out: JSON = {"role": "assistant", "content": "".join(texts)}
    if calls:
        out["tool_calls"] = calls
    if thinking:
        out["reasoning_content"] = "\n".join(thinking)
    return out


def _user(blocks: list[Block], param: str) -> list[JSON]:
    """Tool results first (they answer the assistant turn before), then the user's own text and
    images in the order written."""
    results: list[JSON] = []
    parts: list[JSON] = []
    for j, block in enumerate(blocks):
        if isinstance(block, ToolResultBlock):
            results.append({"role": "tool", "tool_call_id": block.tool_use_id,
                            "content": _result(block, param, f"{param}[{j}].content")})
        elif isinstance(block, TextBlock):
            parts.append(media.text_part(checked_text(block.text, param)))
        elif isinstance(block, ImageBlock):
            parts.append(_image(block, f"{param}[{j}]"))
        elif isinstance(block, ToolUseBlock):
            raise invalid(param, f"{param}: tool_use blocks belong in assistant messages")
    if parts or not results:
        results.append({"role": "user", "content": media.content(parts)})
    return results


def _result(block: ToolResultBlock, param: str, field: str) -> str | list[JSON]:
    """A tool result's text, or its text and images (a screenshot a tool took)."""
    blocks = [TextBlock(text=block.content)] if isinstance(block.content, str) else block.content
    parts = [_image(b, f"{field}[{k}]") if isinstance(b, ImageBlock)
             else media.text_part(checked_text(b.text, param)) for k, b in enumerate(blocks)]
    content = media.content(parts)
    if not block.is_error:
        return content
    return f"Error: {content}" if isinstance(content, str) else [media.text_part("Error:"), *content]


def _image(block: ImageBlock, field: str) -> JSON:
    source = block.source
    if isinstance(source, UrlSource):
        return media.url_part("image", source.url, field)
    return media.base64_part("image", source.data, field, source.media_type)


def options(req: PromptFields) -> ChatOptions | None:
    tools = [{"type": "function", "function": {"name": t.name, "description": t.description,
                                               "parameters": t.input_schema}} for t in req.tools or []]
    choice = req.tool_choice
    tool_choice: str | JSON | None = None
    if isinstance(choice, ToolChoiceNone):
        tool_choice = "none"
    elif isinstance(choice, ToolChoiceAny):
        tool_choice = "required"
    elif isinstance(choice, ToolChoiceTool):
        tool_choice = {"type": "function", "function": {"name": choice.name}}
    if tool_choice not in (None, "none") and not tools and choice is not None:
        raise invalid("tool_choice", f"tool_choice {type(choice).__struct_config__.tag!r} needs tools")
    if isinstance(choice, ToolChoiceTool) and choice.name not in {t.name for t in req.tools or []}:
        raise invalid("tool_choice", f"tool_choice names {choice.name!r}, which is not in tools")
    asked = getattr(choice, "disable_parallel_tool_use", None)  # Anthropic asks the other way round
    return tool_options(tools, tool_choice, None if asked is None else not asked)


# ---- results ----

def content(message: ChatMessage) -> list[BlockOut]:
    """Blocks in the order the model wrote them: thinking, text, tool calls."""
    out: list[BlockOut] = []
    if message.reasoning_content:
        out.append(ThinkingOut(thinking=message.reasoning_content))
    if message.content:
        out.append(TextOut(text=message.content))
    for call in message.tool_calls:
        out.append(ToolUseOut(id=call.id, name=call.name, input=tool_input(call.arguments)))
    return out


def tool_input(arguments: str) -> JSON:
    """Parsed arguments; an object is what Anthropic's clients expect, so anything else is wrapped."""
    try:
        value = json.loads(arguments) if arguments.strip() else {}
    except ValueError:
        return {"arguments": arguments}
    return value if isinstance(value, dict) else {"arguments": value}


def stop_reason(finish: str | None, stop_sequence: str | None) -> StopReason:
    """`stop_sequence`: the request's stop string that ended the text (not a template's own)."""
    if finish == "length":
        return "max_tokens"
    if finish == "tool_calls":
        return "tool_use"
    return "stop_sequence" if stop_sequence is not None else "end_turn"


def usage(u: Usage) -> UsageOut:
    return UsageOut(input_tokens=u.prompt_tokens - u.cached_tokens, output_tokens=u.completion_tokens,
                    cache_read_input_tokens=u.cached_tokens)
