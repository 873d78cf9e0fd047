"""A model's mode: completion, embedding or reranking, as configured or as its GGUF says.

Docker Model Runner runs a model in one mode (`docker model configure --mode`). What decides
here is what the routes allow: only a reranking model reranks.
"""

from __future__ import annotations

from mr.jsontypes import JSON
from mr.runner.settings import ModelSettings
from mr.store.summary import gguf_mode

__all__ = ["gguf_mode", "model_mode"]


def model_mode(config: JSON, settings: ModelSettings) -> str:
    return settings.mode or gguf_mode(config)
