"""The Python face of the native engine: load a model, generate text, embed texts."""

from mr.engine.llm import LLM
from mr.engine.options import EngineOptions, SamplingOptions
from mr.engine.stream import Stream

__all__ = ["LLM", "EngineOptions", "SamplingOptions", "Stream"]
