"""Anthropic's Messages API: /v1/messages and /v1/messages/count_tokens, also under /anthropic/v1
and Docker Model Runner's /engines[/llama.cpp]/v1. Errors there use Anthropic's envelope."""

from __future__ import annotations

from litestar import Router

from mr.server.anthropic.envelope import anthropic_errors_middleware, routing_errors
from mr.server.anthropic.messages import HANDLERS

PREFIXES = ("/v1", "/anthropic/v1", "/engines/v1", "/engines/llama.cpp/v1")


def routers() -> list[Router]:
    return [Router(path=prefix, route_handlers=HANDLERS, include_in_schema=prefix == "/v1")
            for prefix in PREFIXES]


__all__ = ["anthropic_errors_middleware", "routers", "routing_errors"]
