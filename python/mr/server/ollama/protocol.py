"""Ollama's wire types (/api/*): requests, responses and the `options` object."""

from __future__ import annotations

from msgspec import Struct, field

from mr.jsontypes import JSON

KeepAlive = str | float | int | None
Format = str | JSON | None


class Options(Struct, kw_only=True):
    """The sampling subset of Ollama's options; the rest (num_gpu, num_thread, ...) is ignored."""

    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    min_p: float | None = None
    seed: int | None = None
    num_predict: int | None = None
    stop: list[str] | None = None
    repeat_penalty: float | None = None
    repeat_last_n: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    num_ctx: int | None = None


class ToolFunctionCall(Struct, kw_only=True):
    name: str
    arguments: JSON = field(default_factory=dict)


class ToolCall(Struct, kw_only=True):
    function: ToolFunctionCall


class Message(Struct, kw_only=True, omit_defaults=True):
    role: str
    content: str = ""
    images: list[str] | None = None
    tool_calls: list[ToolCall] | None = None
    thinking: str | None = None
    tool_name: str | None = None


class ChatRequest(Struct, kw_only=True):
    model: str
    messages: list[Message] = field(default_factory=list)
    tools: list[JSON] | None = None
    format: Format = None
    options: Options | None = None
    stream: bool = True
    keep_alive: KeepAlive = None
    think: bool | str | None = None


class GenerateRequest(Struct, kw_only=True):
    model: str
    prompt: str = ""
    suffix: str | None = None
    system: str | None = None
    template: str | None = None
    context: list[int] | None = None
    raw: bool = False
    format: Format = None
    options: Options | None = None
    stream: bool = True
    keep_alive: KeepAlive = None
    images: list[str] | None = None
    think: bool | str | None = None


class EmbedRequest(Struct, kw_only=True):
    model: str
    input: str | list[str]
    truncate: bool = True
    options: Options | None = None
    keep_alive: KeepAlive = None
    dimensions: int | None = None


class LegacyEmbeddingsRequest(Struct, kw_only=True):
    model: str
    prompt: str
    options: Options | None = None
    keep_alive: KeepAlive = None


class ModelRequest(Struct, kw_only=True):
    """/api/show, /api/delete: `model` (or the older `name`)."""

    model: str | None = None
    name: str | None = None
    verbose: bool = False

    @property
    def target(self) -> str:
        return self.model or self.name or ""


class PullRequest(Struct, kw_only=True):
    model: str | None = None
    name: str | None = None
    insecure: bool = False
    stream: bool = True

    @property
    def target(self) -> str:
        return self.model or self.name or ""


class Details(Struct, kw_only=True):
    parent_model: str = ""
    format: str = "gguf"
    family: str = ""
    families: list[str] | None = None
    parameter_size: str = ""
    quantization_level: str = ""


class Timings(Struct, kw_only=True, omit_defaults=True):
    total_duration: int = 0
    load_duration: int = 0
    prompt_eval_count: int = 0
    prompt_eval_duration: int = 0
    eval_count: int = 0
    eval_duration: int = 0
