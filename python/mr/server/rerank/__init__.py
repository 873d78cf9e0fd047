"""Reranking: POST /rerank (Cohere/Jina shape, as llama-server and DMR serve it) and POST /score
(DMR's, after vLLM), mounted at the root, /v1, /engines and /engines/llama.cpp."""

from __future__ import annotations

from litestar import Router

from mr.server.rerank.routes import rerank, score

PREFIXES = ("/", "/v1", "/engines", "/engines/llama.cpp")


def routers() -> list[Router]:
    return [Router(path=prefix, route_handlers=[rerank, score], include_in_schema=prefix == "/")
            for prefix in PREFIXES]
