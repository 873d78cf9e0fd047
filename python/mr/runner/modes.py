"""A model's mode: completion, embedding or reranking, as configured or as its GGUF says.

Docker Model Runner runs a model in one mode (`docker model configure --mode`); llama.cpp marks
rerankers with rank pooling (`<arch>.pooling_type` = 4) and embedding models with mean/CLS/last
pooling. What decides here is what the routes allow: only a reranking model reranks.
"""

from __future__ import annotations

from typing import Any

from mr.runner.settings import ModelSettings

POOLING_RANK = 4
EMBEDDING_POOLINGS = {1, 2, 3}  # mean, CLS, last


def gguf_mode(config: dict[str, Any]) -> str:
    """The mode a package's GGUF header implies (its config's `gguf` keys)."""
    kv = config.get("gguf") or {}
    arch = kv.get("general.architecture") or config.get("architecture") or ""
    raw = kv.get(f"{arch}.pooling_type")
    try:
        pooling = int(raw) if raw is not None else None
    except (TypeError, ValueError):
        pooling = None
    if pooling == POOLING_RANK:
        return "reranking"
    if pooling in EMBEDDING_POOLINGS:
        return "embedding"
    return "completion"


def model_mode(config: dict[str, Any], settings: ModelSettings) -> str:
    return settings.mode or gguf_mode(config)
