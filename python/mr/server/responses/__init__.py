"""OpenAI's Responses API: /v1/responses (also /responses and under /engines[/llama.cpp]/v1),
stateful through `previous_response_id` with a bounded in-memory store."""

from __future__ import annotations

from litestar import Router

from mr.server.responses.create import create_response
from mr.server.responses.manage import HANDLERS as MANAGE
from mr.server.responses.store import STORE_KEY, ResponseStore, store_for

HANDLERS = [create_response, *MANAGE]
PREFIXES = ("/v1", "/", "/engines/v1", "/engines/llama.cpp/v1")


def routers() -> list[Router]:
    return [Router(path=prefix, route_handlers=HANDLERS, include_in_schema=prefix == "/v1")
            for prefix in PREFIXES]


__all__ = ["STORE_KEY", "ResponseStore", "routers", "store_for"]
