"""POST /v1/embeddings: float or base64 vectors for one text, many texts, or token lists."""

from __future__ import annotations

import base64
from typing import Annotated

import numpy as np
from litestar import Response, post
from litestar.params import Body

from mr.server import embedding, sse
from mr.server.context import Req, server_context
from mr.server.disconnect import until_disconnect
from mr.server.embedding import Item
from mr.server.errors import invalid
from mr.server.generation import checked_text, log_unknown_fields
from mr.server.openai.completions import token_or_text_batch
from mr.server.openai.protocol import EmbeddingData, EmbeddingRequest, EmbeddingResponse, EmbeddingUsage


def items_of(raw: str | list[str | int | list[int]]) -> list[Item]:
    """Texts, or token lists embedded as given (their ids are checked by the engine)."""
    if isinstance(raw, str):
        return [checked_text(raw, "input")]
    embedding.check_count(raw)
    return [*token_or_text_batch(raw, "input")]


def shape(matrix: np.ndarray, dimensions: int | None) -> np.ndarray:
    """Keep the first `dimensions` components, renormalised (as OpenAI's `dimensions` does)."""
    if dimensions is None or dimensions == matrix.shape[1]:
        return matrix
    if dimensions > matrix.shape[1]:
        raise invalid("dimensions", f"dimensions must be at most {matrix.shape[1]} for this model")
    cut: np.ndarray = matrix[:, :dimensions]
    norms = np.linalg.norm(cut, axis=1, keepdims=True)
    scaled: np.ndarray = cut / np.maximum(norms, 1e-12)
    return scaled.astype(np.float32)


def encode_rows(matrix: np.ndarray, fmt: str) -> list[list[float] | str]:
    if fmt == "base64":
        little = matrix.astype("<f4", copy=False)
        return [base64.b64encode(row.tobytes()).decode("ascii") for row in little]
    rows: list[list[float] | str] = matrix.tolist()
    return rows


@post("/embeddings", summary="Create embeddings", tags=["OpenAI"], status_code=200)
async def embeddings(request: Req, data: Annotated[EmbeddingRequest, Body()]) -> Response[bytes]:
    ctx = server_context(request)
    await log_unknown_fields(request, EmbeddingRequest)
    items = items_of(data.input)
    async with await ctx.runner.acquire(data.model) as lease:
        # a client that leaves cancels the native work (see embedding.in_worker)
        matrix, n_tokens = await until_disconnect(request, embedding.run(ctx, lease, items), lambda: None)
    rows = encode_rows(shape(matrix, data.dimensions), data.encoding_format)
    ctx.metrics.tokens(lease.model.name, n_tokens, 0)
    body = EmbeddingResponse(
        data=[EmbeddingData(index=i, embedding=row) for i, row in enumerate(rows)],
        model=data.model, usage=EmbeddingUsage(prompt_tokens=n_tokens, total_tokens=n_tokens),
    )
    return Response(sse.encode(body), media_type="application/json")
