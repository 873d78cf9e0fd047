"""Running embedding requests, for every route that has them (/v1/embeddings, /api/embed,
/api/embeddings): one input limit, a bounded wait behind the model's embedding context (503 +
Retry-After past it, like the generation queue), the context's memory counted in the budget
before it is created, and token-id inputs embedded as given."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from typing import TypeVar

import numpy as np

from mr.engine import LLM, limits
from mr.errors import ContextLengthError, InvalidArgumentError, OverloadedError
from mr.runner import Lease
from mr.server.context import ServerContext
from mr.server.errors import invalid

MAX_INPUTS = 2048  # OpenAI's cap, for every embedding route
Item = str | Sequence[int]
T = TypeVar("T")


def check_count(items: Sequence[object], param: str = "input") -> None:
    if not items:
        raise invalid(param, f"{param} must not be empty")
    if len(items) > MAX_INPUTS:
        raise invalid(param, f"{param} has {len(items)} items; at most {MAX_INPUTS} per request")


async def run(ctx: ServerContext, lease: Lease, items: list[Item], truncate: bool = False,
              normalize: bool = True) -> tuple[np.ndarray, int]:
    """(one row per input, input tokens). One request at a time uses a model's embedding
    context; at most `max_embed_queue` wait for it."""
    async with turn(ctx, lease, "embed"):
        return await in_worker(lease.llm, lambda: _embed(lease.llm, items, truncate, normalize))


@contextlib.asynccontextmanager
async def turn(ctx: ServerContext, lease: Lease, kind: str) -> AsyncIterator[None]:
    """A turn on the model's embedding contexts (embeddings and rerank alike): a bounded wait
    (503 + Retry-After past it, like the generation queue), their memory counted in the budget
    before they are created."""
    model = lease.model
    if model.embed_waiting >= ctx.runner.config.max_embed_queue:
        raise OverloadedError(f"too many embedding requests are waiting for {model.name} "
                              f"({model.embed_waiting}); try again shortly")
    ctx.runner.reserve_embedder(model, kind)
    model.embed_waiting += 1
    try:
        await model.embed_lock.acquire()
    finally:
        model.embed_waiting -= 1
    try:
        yield
    finally:
        model.embed_lock.release()


async def in_worker(llm: LLM, call: Callable[[], T]) -> T:
    """Run a native embedding call in a worker thread. If this task is cancelled (the client
    left, the server shuts down) the native work is cancelled too, and the turn ends only once
    the thread has let go of the context: an abandoned call would otherwise hold the context
    (and a worker thread) for as long as its batches take, minutes for a large request, and
    keep a stopping server from exiting."""
    work = asyncio.ensure_future(asyncio.to_thread(call))
    try:
        return await asyncio.shield(work)
    except asyncio.CancelledError:
        llm.cancel_embeddings("the request was cancelled")
        with contextlib.suppress(BaseException):
            await work
        raise


def _embed(llm: LLM, items: list[Item], truncate: bool, normalize: bool) -> tuple[np.ndarray, int]:
    try:
        limits.check_texts(items, "inputs")
        tokens = [llm.tokenize(i) if isinstance(i, str) else list(i) for i in items]
    except InvalidArgumentError as exc:  # beyond limits.MAX_TEXT_CHARS (or in all, MAX_REQUEST_CHARS)
        raise invalid("input", str(exc)) from None
    n_vocab = llm.model.n_vocab
    for k, ids in enumerate(tokens):
        if len(ids) == 0:
            raise invalid("input", f"input {k} is empty")
        if not isinstance(items[k], str) and any(not 0 <= t < n_vocab for t in ids):
            raise invalid("input", f"input {k}: token ids must be in [0, {n_vocab})")
    try:
        return llm.embed_tokens(tokens, normalize=normalize, truncate=truncate)
    except InvalidArgumentError as exc:
        if isinstance(exc, ContextLengthError):
            raise
        raise invalid("input", str(exc)) from None
