"""OpenAI's wire types (requests and responses), apart from the serving code.

Every request field of COMPAT.md is declared, with its range, so msgspec validates it while
decoding and the OpenAPI schema states it. Unknown fields are ignored (and logged by the handler).
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta, Struct

from mr.engine.limits import INT32_MAX
from mr.jsontypes import JSON

Temperature = Annotated[float, Meta(ge=0, le=2)]
Unit = Annotated[float, Meta(ge=0, le=1)]
Penalty = Annotated[float, Meta(ge=-2, le=2)]
TopLogprobs = Annotated[int, Meta(ge=0, le=20)]
ChoiceCount = Annotated[int, Meta(ge=1, le=16)]
TokenLimit = Annotated[int, Meta(ge=-1)]
ThinkingBudget = Annotated[int, Meta(ge=-1, le=INT32_MAX)]  # -1: no cap; the sampler counts in 32 bits
Stop = str | Annotated[list[str], Meta(max_length=16)]


# ---- chat: request ----

class ImageUrl(Struct, kw_only=True):
    url: str  # a data: URL, or http(s) where `mr serve --allow-remote-media` fetches it
    detail: Annotated[str, Meta(max_length=32)] | None = None  # auto, low, high: the projector decides


class InputAudio(Struct, kw_only=True):
    data: str  # base64
    format: str  # wav, mp3 (OpenAI's), flac


class ContentPart(Struct, kw_only=True):
    type: str
    text: str | None = None
    image_url: ImageUrl | str | None = None  # a bare URL string, as some clients send it
    input_audio: InputAudio | None = None


class FunctionCall(Struct, kw_only=True):
    name: str
    arguments: str = ""


class ToolCallIn(Struct, kw_only=True):
    function: FunctionCall
    id: str | None = None
    type: str = "function"


class ChatMessageIn(Struct, kw_only=True):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCallIn] | None = None
    tool_call_id: str | None = None
    reasoning_content: str | None = None


class FunctionDef(Struct, kw_only=True):
    name: Annotated[str, Meta(min_length=1, max_length=256)]
    description: str | None = None
    parameters: JSON | None = None
    strict: bool | None = None


class Tool(Struct, kw_only=True):
    function: FunctionDef
    type: Literal["function"] = "function"


class NamedFunction(Struct, kw_only=True):
    name: str


class NamedToolChoice(Struct, kw_only=True):
    function: NamedFunction
    type: Literal["function"] = "function"


class JsonSchemaSpec(Struct, kw_only=True):
    name: str = "response"
    schema: JSON | None = None
    strict: bool | None = None
    description: str | None = None


class ResponseFormat(Struct, kw_only=True):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaSpec | None = None


class PredictionIn(Struct, kw_only=True):
    """Predicted Outputs: the answer the client expects (e.g. a file it asked to edit)."""

    type: Literal["content"]
    content: str | list[ContentPart]


class StreamOptions(Struct, kw_only=True):
    include_usage: bool = False


class SamplingFields(Struct, kw_only=True):
    """Fields shared by chat and text completions."""

    model: Annotated[str, Meta(min_length=1, max_length=512)]
    max_tokens: TokenLimit | None = None
    temperature: Temperature | None = None
    top_p: Unit | None = None
    top_k: Annotated[int, Meta(ge=0)] | None = None
    min_p: Unit | None = None
    n: ChoiceCount = 1
    stop: Stop | None = None
    seed: int | None = None
    presence_penalty: Penalty | None = None
    frequency_penalty: Penalty | None = None
    repeat_penalty: Annotated[float, Meta(gt=0, le=10)] | None = None
    logit_bias: dict[str, Annotated[float, Meta(ge=-100, le=100)]] | None = None
    ignore_eos: bool = False  # llama-server's extension: generate max_tokens tokens (benchmarks)
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = None


class ChatCompletionRequest(SamplingFields, kw_only=True):
    messages: Annotated[list[ChatMessageIn], Meta(min_length=1)]
    max_completion_tokens: TokenLimit | None = None
    logprobs: bool = False
    top_logprobs: TopLogprobs | None = None
    response_format: ResponseFormat | None = None
    tools: list[Tool] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    # thinking control (mr.server.thinking)
    reasoning_effort: Literal["none", "minimal", "low", "medium", "high"] | None = None
    chat_template_kwargs: JSON | None = None
    thinking_budget_tokens: ThinkingBudget | None = None
    reasoning_budget_tokens: ThinkingBudget | None = None
    prediction: PredictionIn | None = None


# ---- chat: response ----

class FunctionOut(Struct, kw_only=True):
    name: str
    arguments: str


class ToolCallOut(Struct, kw_only=True):
    id: str
    function: FunctionOut
    type: str = "function"


class ChatMessageOut(Struct, kw_only=True, omit_defaults=True):
    role: str
    content: str | None
    reasoning_content: str | None = None
    tool_calls: list[ToolCallOut] | None = None


class TopLogprobOut(Struct, kw_only=True):
    token: str
    logprob: float
    bytes: list[int] | None


class LogprobOut(Struct, kw_only=True):
    token: str
    logprob: float
    bytes: list[int] | None
    top_logprobs: list[TopLogprobOut]


class ChoiceLogprobs(Struct, kw_only=True):
    content: list[LogprobOut] | None


class ChatChoice(Struct, kw_only=True):
    index: int
    message: ChatMessageOut
    logprobs: ChoiceLogprobs | None
    finish_reason: str | None


class PromptTokensDetails(Struct, kw_only=True):
    cached_tokens: int = 0


class CompletionTokensDetails(Struct, kw_only=True):
    # Predicted Outputs: predicted tokens the answer kept, and those it did not (OpenAI's names)
    accepted_prediction_tokens: int = 0
    rejected_prediction_tokens: int = 0


class UsageOut(Struct, kw_only=True):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails = msgspec.field(default_factory=PromptTokensDetails)
    completion_tokens_details: CompletionTokensDetails = msgspec.field(
        default_factory=CompletionTokensDetails)


class ChatCompletion(Struct, kw_only=True):
    id: str
    created: int
    model: str
    choices: list[ChatChoice]
    usage: UsageOut
    object: str = "chat.completion"
    system_fingerprint: str = "mr"


class ToolCallDeltaFunction(Struct, kw_only=True, omit_defaults=True):
    name: str | None = None
    arguments: str = ""


class ToolCallDeltaOut(Struct, kw_only=True, omit_defaults=True):
    index: int
    id: str | None = None
    type: str | None = None
    function: ToolCallDeltaFunction | None = None


class DeltaOut(Struct, kw_only=True, omit_defaults=True):
    role: str | None = None
    content: str | None = None
    reasoning_content: str | None = None
    tool_calls: list[ToolCallDeltaOut] | None = None


# ---- text completions ----

class CompletionRequest(SamplingFields, kw_only=True):
    prompt: str | list[str | int | list[int]]
    echo: bool = False
    logprobs: Annotated[int, Meta(ge=0, le=5)] | None = None
    best_of: Annotated[int, Meta(ge=1, le=16)] | None = None
    suffix: str | None = None


class CompletionLogprobs(Struct, kw_only=True):
    tokens: list[str]
    token_logprobs: list[float]
    top_logprobs: list[dict[str, float]] | None
    text_offset: list[int]


class CompletionChoice(Struct, kw_only=True):
    index: int
    text: str
    logprobs: CompletionLogprobs | None
    finish_reason: str | None


class Completion(Struct, kw_only=True):
    id: str
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: UsageOut
    object: str = "text_completion"
    system_fingerprint: str = "mr"


# ---- embeddings ----

class EmbeddingRequest(Struct, kw_only=True):
    model: Annotated[str, Meta(min_length=1, max_length=512)]
    input: str | list[str | int | list[int]]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: Annotated[int, Meta(ge=1)] | None = None
    user: str | None = None


class EmbeddingData(Struct, kw_only=True):
    index: int
    embedding: list[float] | str
    object: str = "embedding"


class EmbeddingUsage(Struct, kw_only=True):
    prompt_tokens: int
    total_tokens: int


class EmbeddingResponse(Struct, kw_only=True):
    data: list[EmbeddingData]
    model: str
    usage: EmbeddingUsage
    object: str = "list"


# ---- models ----

class ModelCard(Struct, kw_only=True):
    id: str
    created: int
    owned_by: str = "docker"
    object: str = "model"
    # mr's: completion, tools, reasoning, vision, audio, ... (`mr show`'s and Ollama's names)
    capabilities: list[str] = msgspec.field(default_factory=list)


class ModelList(Struct, kw_only=True):
    data: list[ModelCard]
    object: str = "list"
