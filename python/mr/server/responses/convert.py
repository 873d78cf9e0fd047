"""Responses requests -> the engine's chat arguments.

Input items are first normalised (ids, typed content parts: what GET .../input_items returns
and what is stored), then turned into OpenAI chat messages, the form the chat rendering takes:
`function_call` items become assistant tool calls, `function_call_output` items tool messages.
Output items are turned into messages the same way, so a chain through `previous_response_id`
is just the stored messages followed by the new input.
"""

from __future__ import annotations

from mr.engine import ChatOptions
from mr.jsontypes import JSON
from mr.server.errors import invalid
from mr.server.generation import (
    Chat,
    Prepared,
    checked_text,
    media,
    new_id,
    same_sampling,
    sampling_of,
    tool_options,
)
from mr.server.responses.protocol import ContentPart, FunctionTool, InputItem, ResponseRequest
from mr.server.thinking import from_effort

ROLES = {"user", "assistant", "system", "developer"}
TEXT_PARTS = {"input_text", "output_text", "text", "refusal"}
IMAGE_PART = "input_image"  # in user messages
SKIPPED_ITEMS = {"reasoning"}  # replayed by clients; the model's reasoning is not re-rendered


def prepare(req: ResponseRequest, items: list[JSON],
            history: list[JSON]) -> Prepared[Chat]:
    msgs = [{"role": "system", "content": checked_text(req.instructions, "instructions")}] \
        if req.instructions else []
    msgs += history + messages(items)
    thinking = from_effort(req.reasoning.effort if req.reasoning else None, "reasoning.effort")
    return Prepared(model=req.model, input=Chat(msgs, options(req), thinking),
                    sampling=same_sampling(sampling_of(req)), fields=req,
                    max_tokens=req.max_output_tokens or -1, ignore_eos=req.ignore_eos)


# ---- input items ----

def input_items(req: ResponseRequest) -> list[JSON]:
    if isinstance(req.input, str):
        return [_message_item("user", [{"type": "input_text", "text": checked_text(req.input, "input")}])]
    if not req.input:
        raise invalid("input", "input must not be empty")
    return [_item(i, item) for i, item in enumerate(req.input)]


def _item(i: int, item: InputItem) -> JSON:
    param = f"input[{i}]"
    if item.type == "message":
        if item.role not in ROLES:
            raise invalid(f"{param}.role", f"{param}.role must be one of {', '.join(sorted(ROLES))}")
        return _message_item(item.role, _parts(item, param), item.id)
    if item.type == "function_call":
        if not item.call_id or not item.name or item.arguments is None:
            raise invalid(param, f"{param}: a function_call needs call_id, name and arguments")
        return {"type": "function_call", "id": item.id or new_id("fc"), "call_id": item.call_id,
                "name": item.name, "arguments": checked_text(item.arguments, param), "status": "completed"}
    if item.type == "function_call_output":
        if not item.call_id or item.output is None:
            raise invalid(param, f"{param}: a function_call_output needs call_id and output")
        return {"type": "function_call_output", "id": item.id or new_id("fco"), "call_id": item.call_id,
                "output": _output_text(item.output, param), "status": "completed"}
    if item.type in SKIPPED_ITEMS:
        return {"type": item.type, "id": item.id or new_id("rs"), "summary": item.summary or []}
    raise invalid(f"{param}.type", f"{param}.type {item.type!r} is not supported (message, function_call, "
                                   "function_call_output)")


def _message_item(role: str, content: list[JSON], item_id: str | None = None) -> JSON:
    return {"type": "message", "id": item_id or new_id("msg"), "role": role, "status": "completed",
            "content": content}


def _parts(item: InputItem, param: str) -> list[JSON]:
    kind = "output_text" if item.role == "assistant" else "input_text"
    if item.content is None:
        raise invalid(f"{param}.content", f"{param}.content is required")
    if isinstance(item.content, str):
        return [{"type": kind, "text": checked_text(item.content, f"{param}.content")}]
    images = item.role == "user"
    return [_part(part, f"{param}.content[{j}]", images) for j, part in enumerate(item.content)]


def _part(part: ContentPart, param: str, images: bool = False) -> JSON:
    if images and part.type == IMAGE_PART:
        return _image(part, param)
    if part.type not in TEXT_PARTS or part.text is None:
        kinds = "text and input_image" if images else "text"
        raise invalid(param, f"{param}: only {kinds} parts are supported, not {part.type!r}")
    return {"type": part.type, "text": checked_text(part.text, param)}


def _image(part: ContentPart, param: str) -> JSON:
    """An input_image as stored and listed: its URL (a data: URL, or http(s)) and detail."""
    if part.image_url is None:
        why = "the Files API (file_id) is not served here" if part.file_id else "image_url is required"
        raise invalid(param, f"{param}: {why}; send image_url as a data: URL")
    media.url_part("image", part.image_url, param)  # refused now if it can never be an image URL
    return {"type": IMAGE_PART, "image_url": part.image_url.strip(), "detail": part.detail or "auto"}


def _output_text(output: str | list[ContentPart], param: str) -> str:
    if isinstance(output, str):
        return checked_text(output, f"{param}.output")
    return "\n".join(_part(p, f"{param}.output[{j}]")["text"] for j, p in enumerate(output))


# ---- items -> chat messages ----

def messages(items: list[JSON], where: str = "input") -> list[JSON]:
    """Normalised input or output items as chat messages; consecutive calls share one assistant
    turn. An image's refusals name `where[i].content[j]`."""
    out: list[JSON] = []
    for i, item in enumerate(items):
        kind = item["type"]
        if kind == "message":
            role = "system" if item["role"] == "developer" else item["role"]
            out.append({"role": role, "content": _content(item["content"], f"{where}[{i}].content")})
        elif kind == "function_call":
            call = {"id": item["call_id"], "type": "function",
                    "function": {"name": item["name"], "arguments": item["arguments"]}}
            last = out[-1] if out else None
            if last is not None and last["role"] == "assistant":
                last.setdefault("tool_calls", []).append(call)
            else:
                out.append({"role": "assistant", "content": "", "tool_calls": [call]})
        elif kind == "function_call_output":
            out.append({"role": "tool", "tool_call_id": item["call_id"], "content": item["output"]})
    return out


def _content(parts: list[JSON], param: str) -> str | list[JSON]:
    return media.content([media.url_part("image", p["image_url"], f"{param}[{j}]") if p["type"] == IMAGE_PART
                          else media.text_part(p["text"]) for j, p in enumerate(parts)])


# ---- tools and output format ----

def options(req: ResponseRequest) -> ChatOptions | None:
    tools = [_tool(i, t) for i, t in enumerate(req.tools or [])]
    choice = _tool_choice(req, {t["function"]["name"] for t in tools})
    return tool_options(tools, choice, req.parallel_tool_calls, _format(req))


def _tool(i: int, tool: FunctionTool) -> JSON:
    if tool.type != "function" or not tool.name:
        raise invalid(f"tools[{i}]", f"tools[{i}]: only function tools with a name are supported, "
                                     f"not {tool.type!r}")
    return {"type": "function", "function": {"name": tool.name, "description": tool.description,
                                             "parameters": tool.parameters, "strict": tool.strict}}


def _tool_choice(req: ResponseRequest, names: set[str]) -> str | JSON | None:
    choice = req.tool_choice
    if choice is None or isinstance(choice, str):
        if choice == "required" and not names:
            raise invalid("tool_choice", 'tool_choice "required" needs tools')
        return choice
    if choice.type != "function" or not choice.name:
        raise invalid("tool_choice", f"tool_choice type {choice.type!r} is not supported (name a function)")
    if choice.name not in names:
        raise invalid("tool_choice", f"tool_choice names {choice.name!r}, which is not in tools")
    return {"type": "function", "function": {"name": choice.name}}


def _format(req: ResponseRequest) -> JSON | None:
    fmt = req.text.format if req.text is not None else None
    if fmt is None or fmt.type == "text":
        return None
    if fmt.type == "json_object":
        return {"type": "json_object"}
    if fmt.schema is None:
        raise invalid("text.format.schema", "text.format json_schema needs a schema")
    return {"type": "json_schema", "json_schema": {"name": fmt.name or "response", "schema": fmt.schema,
                                                   "strict": fmt.strict}}


def text_config(req: ResponseRequest) -> JSON:
    """The `text` field of the Response object: the format as asked."""
    fmt = req.text.format if req.text is not None else None
    if fmt is None:
        return {"format": {"type": "text"}}
    out: JSON = {"type": fmt.type}
    if fmt.type == "json_schema":
        out.update(name=fmt.name or "response", schema=fmt.schema, strict=fmt.strict)
    return {"format": out}
