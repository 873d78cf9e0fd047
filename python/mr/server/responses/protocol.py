"""OpenAI Responses API wire types: the request, its input items, and the Response object.

Input items are one permissive Struct, checked per `type` in mr.server.responses.convert:
OpenAI lets a message item omit its `type`, so a tagged union cannot decode them. Output items
are written as plain dicts in mr.server.responses.output (they are also what is stored).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from msgspec import Meta, Struct

from mr.engine.limits import INT32_MAX
from mr.jsontypes import JSON

MAX_ITEMS = 4096  # input items per request: past this it is abuse, not a conversation


class ContentPart(Struct, kw_only=True):
    type: str
    text: str | None = None
    image_url: str | None = None  # input_image: a data: URL, or http(s) where the server fetches it
    detail: Annotated[str, Meta(max_length=32)] | None = None  # input_image: the projector decides
    file_id: str | None = None  # input_image from the Files API: not served here


class InputItem(Struct, kw_only=True):
    type: str = "message"
    role: str | None = None
    content: str | Annotated[list[ContentPart], Meta(max_length=MAX_ITEMS)] | None = None
    id: str | None = None
    status: str | None = None
    call_id: str | None = None
    name: str | None = None
    arguments: str | None = None
    output: str | Annotated[list[ContentPart], Meta(max_length=MAX_ITEMS)] | None = None
    summary: list[Any] | None = None


class FunctionTool(Struct, kw_only=True):
    type: str
    name: Annotated[str, Meta(min_length=1, max_length=256)] | None = None
    description: str | None = None
    parameters: JSON | None = None
    strict: bool | None = None


class NamedToolChoice(Struct, kw_only=True):
    type: str
    name: str | None = None


class TextFormat(Struct, kw_only=True):
    type: Literal["text", "json_object", "json_schema"] = "text"
    name: str | None = None
    schema: JSON | None = None
    strict: bool | None = None
    description: str | None = None


class TextConfig(Struct, kw_only=True):
    format: TextFormat | None = None
    verbosity: str | None = None


class ReasoningConfig(Struct, kw_only=True):
    effort: str | None = None  # none/minimal: thinking off; low/medium/high: on (checked in convert)
    summary: str | None = None  # accepted; reasoning is returned whole, as reasoning_text
    generate_summary: str | None = None


class ResponseRequest(Struct, kw_only=True):
    model: Annotated[str, Meta(min_length=1, max_length=512)]
    input: str | Annotated[list[InputItem], Meta(max_length=MAX_ITEMS)]
    instructions: str | None = None
    max_output_tokens: Annotated[int, Meta(ge=1, le=INT32_MAX)] | None = None  # 32-bit in the engine
    temperature: Annotated[float, Meta(ge=0, le=2)] | None = None
    top_p: Annotated[float, Meta(ge=0, le=1)] | None = None
    tools: Annotated[list[FunctionTool], Meta(max_length=512)] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    text: TextConfig | None = None
    stream: bool = False
    store: bool = True
    previous_response_id: Annotated[str, Meta(min_length=1, max_length=256)] | None = None
    metadata: Annotated[dict[str, Annotated[str, Meta(max_length=512)]], Meta(max_length=16)] | None = None
    user: str | None = None
    reasoning: ReasoningConfig | None = None
    truncation: Literal["auto", "disabled"] | None = None
    ignore_eos: bool = False  # llama-server's extension, as on chat completions: max_output_tokens tokens


class InputTokensDetails(Struct, kw_only=True):
    cached_tokens: int = 0


class OutputTokensDetails(Struct, kw_only=True):
    reasoning_tokens: int = 0


class ResponseUsage(Struct, kw_only=True):
    input_tokens: int
    output_tokens: int
    total_tokens: int
    input_tokens_details: InputTokensDetails
    output_tokens_details: OutputTokensDetails


class DeletedResponse(Struct, kw_only=True):
    id: str
    object: str = "response"
    deleted: bool = True


class ItemList(Struct, kw_only=True):
    data: list[JSON]
    first_id: str | None
    last_id: str | None
    has_more: bool
    object: str = "list"
