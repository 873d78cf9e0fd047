"""The Python face of the native engine: load a model, generate text, chat, embed texts."""

from mr.engine.chat import AsyncChatStream, ChatPrompt, ChatStream
from mr.engine.llm import LLM
from mr.engine.options import EngineOptions, SamplingOptions
from mr.engine.stream import AsyncStream, Stream
from mr.engine.types import (
    ChatDelta,
    ChatMessage,
    ChatOptions,
    Timings,
    TokenLogprob,
    ToolCall,
    ToolCallDelta,
    TopLogprob,
    Usage,
)

__all__ = [
    "LLM",
    "AsyncChatStream",
    "AsyncStream",
    "ChatDelta",
    "ChatMessage",
    "ChatOptions",
    "ChatPrompt",
    "ChatStream",
    "EngineOptions",
    "SamplingOptions",
    "Stream",
    "Timings",
    "TokenLogprob",
    "ToolCall",
    "ToolCallDelta",
    "TopLogprob",
    "Usage",
]
