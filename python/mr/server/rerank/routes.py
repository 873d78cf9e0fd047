"""The rerank and score handlers: a reranking model scores (query, document) pairs in batches."""

from __future__ import annotations

import secrets
import time
from typing import Annotated

import numpy as np
from litestar import Response, post
from litestar.params import Body

from mr.runner import Lease, Runner
from mr.server import embedding, sse
from mr.server.context import Req, ServerContext, server_context
from mr.server.disconnect import until_disconnect
from mr.server.errors import invalid
from mr.server.rerank.protocol import (
    DocumentIn,
    DocumentOut,
    RerankRequest,
    RerankResponse,
    RerankResult,
    RerankUsage,
    ScoreData,
    ScoreRequest,
    ScoreResponse,
)


async def require_reranker(runner: Runner, model: str) -> None:
    """A 400 before anything loads unless the model runs in reranking mode."""
    name, mode = await runner.mode_of(model)
    if mode != "reranking":
        raise invalid("model", f"model {name} cannot rerank: it runs in {mode} mode (its GGUF has no "
                               "rank pooling); if it is a reranker, run "
                               f"`mr configure --mode reranking {name}`")


async def score_pairs(ctx: ServerContext, lease: Lease, query: str, documents: list[str],
                      truncate: bool) -> tuple[np.ndarray, int]:
    """Scores of `documents` against `query` and the tokens processed (one embedder at a time)."""
    async with embedding.turn(ctx, lease, "rank"):
        scores, n_tokens, _batches = await embedding.in_worker(
            lease.llm, lambda: lease.llm.rerank(query, documents, truncate))
    return scores, n_tokens


def _text(doc: str | DocumentIn) -> str:
    return doc if isinstance(doc, str) else doc.text


@post("/rerank", summary="Rerank documents against a query", tags=["Rerank"], status_code=200)
async def rerank(request: Req, data: Annotated[RerankRequest, Body()]) -> Response[bytes]:
    ctx = server_context(request)
    texts = [_text(d) for d in data.documents]
    await require_reranker(ctx.runner, data.model)
    async with await ctx.runner.acquire(data.model) as lease:
        scores, n_tokens = await until_disconnect(
            request, score_pairs(ctx, lease, data.query, texts, data.truncate), lambda: None)
    order = sorted(range(len(texts)), key=lambda i: -float(scores[i]))[: data.top_n]
    results = [RerankResult(index=i, relevance_score=float(scores[i]),
                            document=DocumentOut(text=texts[i]) if data.return_documents else None)
               for i in order]
    ctx.metrics.tokens(lease.model.name, n_tokens, 0)
    body = RerankResponse(model=data.model, results=results, id="rerank-" + secrets.token_hex(12),
                          usage=RerankUsage(prompt_tokens=n_tokens, total_tokens=n_tokens))
    return Response(sse.encode(body), media_type="application/json")


def score_plan(text_1: str | list[str], text_2: str | list[str]) -> list[tuple[str, str]]:
    """The (query, document) pairs of a score request: one against many, or pairwise."""
    firsts = [text_1] if isinstance(text_1, str) else text_1
    seconds = [text_2] if isinstance(text_2, str) else text_2
    if len(firsts) == 1:
        return [(firsts[0], s) for s in seconds]
    if len(firsts) != len(seconds):
        raise invalid("text_2", f"text_1 has {len(firsts)} texts and text_2 {len(seconds)}: give one "
                                "text_1, or as many as text_2")
    return list(zip(firsts, seconds, strict=True))


@post("/score", summary="Score text pairs", tags=["Rerank"], status_code=200)
async def score(request: Req, data: Annotated[ScoreRequest, Body()]) -> Response[bytes]:
    ctx = server_context(request)
    pairs = score_plan(data.text_1, data.text_2)
    by_query: dict[str, list[int]] = {}
    for i, (query, _doc) in enumerate(pairs):
        by_query.setdefault(query, []).append(i)
    out = np.zeros(len(pairs), dtype=np.float32)
    total = 0
    await require_reranker(ctx.runner, data.model)
    async with await ctx.runner.acquire(data.model) as lease:
        for query, indices in by_query.items():  # one batched call per distinct first text
            documents = [pairs[i][1] for i in indices]
            scores, n_tokens = await until_disconnect(
                request, score_pairs(ctx, lease, query, documents, data.truncate), lambda: None)
            out[indices] = scores
            total += n_tokens
    ctx.metrics.tokens(lease.model.name, total, 0)
    body = ScoreResponse(id="score-" + secrets.token_hex(12), created=int(time.time()), model=data.model,
                         data=[ScoreData(index=i, score=float(s)) for i, s in enumerate(out)],
                         usage=RerankUsage(prompt_tokens=total, total_tokens=total))
    return Response(sse.encode(body), media_type="application/json")
