"""OpenAI's API: protocol types in `protocol`, one module per endpoint, mounted under three prefixes."""

from __future__ import annotations

from litestar import Router

from mr.server.openai.chat import chat_completions
from mr.server.openai.completions import completions
from mr.server.openai.embeddings import embeddings
from mr.server.openai.models import get_model, list_models

HANDLERS = [chat_completions, completions, embeddings, list_models, get_model]
PREFIXES = ("/v1", "/engines/v1", "/engines/llama.cpp/v1")


def routers() -> list[Router]:
    """The same handlers at /v1 and at Docker Model Runner's /engines[/llama.cpp]/v1."""
    return [Router(path=prefix, route_handlers=HANDLERS, include_in_schema=prefix == "/v1")
            for prefix in PREFIXES]
