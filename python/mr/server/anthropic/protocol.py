"""Anthropic Messages API wire types (requests and responses).

Content blocks are tagged unions on `type`, so an unknown or unsupported block type (documents,
search results) fails decoding with a 400 that names its place. Unknown top-level fields are ignored.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, Struct

from mr.engine.limits import INT32_MAX
from mr.jsontypes import JSON

MAX_MESSAGES = 4096  # past this a request is abuse, not a conversation
MAX_BLOCKS = 4096


# ---- request: content blocks ----

class TextBlock(Struct, kw_only=True, tag_field="type", tag="text"):
    text: str
    cache_control: Any = None
    citations: Any = None


class Base64Source(Struct, kw_only=True, tag_field="type", tag="base64"):
    media_type: Literal["image/jpeg", "image/png", "image/gif", "image/webp"]
    data: str


class UrlSource(Struct, kw_only=True, tag_field="type", tag="url"):
    url: str  # fetched only where `mr serve --allow-remote-media` says so


class ImageBlock(Struct, kw_only=True, tag_field="type", tag="image"):
    source: Base64Source | UrlSource
    cache_control: Any = None


class ToolUseBlock(Struct, kw_only=True, tag_field="type", tag="tool_use"):
    id: Annotated[str, Meta(min_length=1, max_length=256)]
    name: Annotated[str, Meta(min_length=1, max_length=256)]
    input: JSON
    cache_control: Any = None


class ToolResultBlock(Struct, kw_only=True, tag_field="type", tag="tool_result"):
    tool_use_id: Annotated[str, Meta(min_length=1, max_length=256)]
    content: str | Annotated[list[TextBlock | ImageBlock], Meta(max_length=MAX_BLOCKS)] = ""
    is_error: bool = False
    cache_control: Any = None


class ThinkingBlock(Struct, kw_only=True, tag_field="type", tag="thinking"):
    thinking: str
    signature: str = ""


class RedactedThinkingBlock(Struct, kw_only=True, tag_field="type", tag="redacted_thinking"):
    data: str = ""


Block = TextBlock | ImageBlock | ToolUseBlock | ToolResultBlock | ThinkingBlock | RedactedThinkingBlock


class MessageParam(Struct, kw_only=True):
    role: Literal["user", "assistant"]
    content: str | Annotated[list[Block], Meta(max_length=MAX_BLOCKS)]


# ---- request: tools, thinking ----

class ToolDef(Struct, kw_only=True):
    name: Annotated[str, Meta(min_length=1, max_length=256)]
    input_schema: JSON
    description: str | None = None
    type: Literal["custom"] | None = None
    cache_control: Any = None


class ToolChoiceAuto(Struct, kw_only=True, tag_field="type", tag="auto"):
    disable_parallel_tool_use: bool | None = None  # None: unsaid (mr.server.generation.tools)


class ToolChoiceAny(Struct, kw_only=True, tag_field="type", tag="any"):
    disable_parallel_tool_use: bool | None = None  # None: unsaid (mr.server.generation.tools)


class ToolChoiceTool(Struct, kw_only=True, tag_field="type", tag="tool"):
    name: Annotated[str, Meta(min_length=1, max_length=256)]
    disable_parallel_tool_use: bool | None = None


class ToolChoiceNone(Struct, kw_only=True, tag_field="type", tag="none"):
    pass


ToolChoice = ToolChoiceAuto | ToolChoiceAny | ToolChoiceTool | ToolChoiceNone


class ThinkingConfig(Struct, kw_only=True):
    type: Literal["enabled", "disabled", "adaptive"]
    budget_tokens: Annotated[int, Meta(ge=1, le=INT32_MAX)] | None = None  # the sampler's count is 32-bit


class Metadata(Struct, kw_only=True):
    user_id: str | None = None


class PromptFields(Struct, kw_only=True):
    """What a prompt is made of: shared by /v1/messages and /v1/messages/count_tokens."""

    model: Annotated[str, Meta(min_length=1, max_length=512)]
    messages: Annotated[list[MessageParam], Meta(min_length=1, max_length=MAX_MESSAGES)]
    system: str | Annotated[list[TextBlock], Meta(max_length=MAX_BLOCKS)] | None = None
    tools: Annotated[list[ToolDef], Meta(max_length=512)] | None = None
    tool_choice: ToolChoice | None = None
    thinking: ThinkingConfig | None = None


class MessagesRequest(PromptFields, kw_only=True):
    max_tokens: Annotated[int, Meta(ge=1, le=INT32_MAX)]  # the engine's counts are 32-bit
    stop_sequences: Annotated[list[Annotated[str, Meta(min_length=1)]], Meta(max_length=16)] | None = None
    temperature: Annotated[float, Meta(ge=0, le=1)] | None = None
    top_p: Annotated[float, Meta(ge=0, le=1)] | None = None
    top_k: Annotated[int, Meta(ge=0)] | None = None
    stream: bool = False
    metadata: Metadata | None = None
    service_tier: str | None = None
    ignore_eos: bool = False  # llama-server's extension, as on chat completions: max_tokens tokens


class CountTokensRequest(PromptFields, kw_only=True):
    pass


# ---- response ----

class TextOut(Struct, kw_only=True, tag_field="type", tag="text"):
    text: str


class ToolUseOut(Struct, kw_only=True, tag_field="type", tag="tool_use"):
    id: str
    name: str
    input: JSON


class ThinkingOut(Struct, kw_only=True, tag_field="type", tag="thinking"):
    thinking: str
    signature: str = ""


BlockOut = TextOut | ToolUseOut | ThinkingOut
StopReason = Literal["end_turn", "max_tokens", "stop_sequence", "tool_use"]


class UsageOut(Struct, kw_only=True):
    input_tokens: int  # prompt tokens not read from the cache, as Anthropic counts them
    output_tokens: int
    cache_read_input_tokens: int = 0
    cache_creation_input_tokens: int = 0


class MessageOut(Struct, kw_only=True):
    id: str
    type: str = "message"
    role: str = "assistant"
    model: str
    content: list[BlockOut]
    stop_reason: StopReason | None
    stop_sequence: str | None
    usage: UsageOut


class CountTokensOut(Struct, kw_only=True):
    input_tokens: int


class ErrorDetail(Struct, kw_only=True):
    type: str
    message: str


class ErrorOut(Struct, kw_only=True):
    type: str = "error"
    error: ErrorDetail


def encode(obj: object) -> bytes:
    return msgspec.json.encode(obj)
