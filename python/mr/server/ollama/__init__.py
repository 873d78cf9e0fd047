"""Ollama's API under /api: chat, generate, embed (NDJSON streaming), and model management."""

from __future__ import annotations

from litestar import Router

from mr.server.ollama import inference, manage


def routers() -> list[Router]:
    return [Router(path="/api", route_handlers=[inference.chat, inference.generate, *manage.HANDLERS])]
