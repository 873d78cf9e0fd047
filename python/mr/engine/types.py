"""Result types of the engine's Python face (msgspec Structs: cheap to build, encode directly)."""

from __future__ import annotations

import msgspec

from mr.jsontypes import JSON


class Usage(msgspec.Struct, kw_only=True):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0  # prompt tokens whose KV cells were reused from an earlier request
    accepted_prediction_tokens: int = 0  # drafted from the request's prediction and kept
    rejected_prediction_tokens: int = 0  # drafted from it and not kept

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class Timings(msgspec.Struct, kw_only=True):
    """Where a request's time went, in milliseconds."""

    queue_ms: float = 0.0  # waiting for a free slot
    prefill_ms: float = 0.0  # from admission to the first token
    decode_ms: float = 0.0  # from the first token to the last

    def tokens_per_second(self, completion_tokens: int) -> float:
        return (completion_tokens - 1) * 1000.0 / self.decode_ms if self.decode_ms > 0 else 0.0


class WireReport(msgspec.Struct, kw_only=True):
    """What the engine sent to a request's socket itself (a stream with a wire, at its end)."""

    times: list[float]  # when each frame went out (time.perf_counter() seconds)
    payload: bytes  # the frames' payload, up to the log size asked for
    n_bytes: int  # the payload's whole size


class SpecCounts(msgspec.Struct):
    """Speculative decoding's counts for one request: draft tokens verified and kept, and of them
    those taken from the request's prediction (OpenAI's accepted/rejected_prediction_tokens)."""

    drafted: int = 0
    accepted: int = 0
    prediction_accepted: int = 0
    prediction_rejected: int = 0


class TopLogprob(msgspec.Struct, kw_only=True, array_like=True):
    token: int
    text: bytes
    logprob: float


class TokenLogprob(msgspec.Struct, kw_only=True):
    token: int
    text: bytes
    logprob: float
    top: list[TopLogprob] = msgspec.field(default_factory=list)


class ToolCall(msgspec.Struct, kw_only=True):
    id: str
    name: str
    arguments: str  # JSON text, as OpenAI sends it


class ToolCallDelta(msgspec.Struct, kw_only=True, omit_defaults=True):
    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


class ChatDelta(msgspec.Struct, kw_only=True, omit_defaults=True):
    """What one streamed chunk adds to the assistant message."""

    content: str = ""
    reasoning_content: str = ""
    tool_calls: list[ToolCallDelta] = msgspec.field(default_factory=list)


class ChatMessage(msgspec.Struct, kw_only=True):
    """The whole assistant message, parsed from the model's output."""

    content: str = ""
    reasoning_content: str = ""
    tool_calls: list[ToolCall] = msgspec.field(default_factory=list)


class ChatOptions(msgspec.Struct, kw_only=True, frozen=True):
    """OpenAI chat features beyond plain messages."""

    tools: list[JSON] | None = None  # OpenAI tool objects: {"type": "function", "function": {...}}
    tool_choice: str | JSON | None = None  # "none" | "auto" | "required" | {"type": "function", ...}
    parallel_tool_calls: bool = False
    response_format: JSON | None = None  # {"type": "json_object"} | {"type": "json_schema", ...}
    chat_template_kwargs: JSON | None = None  # extra template variables (llama-server's field)
    enable_thinking: bool | None = None  # None: chat_template_kwargs' value, else the template's default
    reasoning_budget: int | None = None  # at most this many thinking tokens; None: no cap
