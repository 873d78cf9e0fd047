"""POST /v1/completions: raw text completion (no chat template), streamed or not."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

import numpy as np
from litestar import Response, post
from litestar.params import Body
from litestar.response import Stream

from mr.engine import LLM, AsyncStream, TokenLogprob, limits
from mr.errors import InvalidArgumentError
from mr.runner import Lease
from mr.server import sse
from mr.server.context import Req, ServerContext, server_context
from mr.server.disconnect import until_disconnect
from mr.server.errors import invalid
from mr.server.metrics import StreamTimer
from mr.server.modeldefaults import model_defaults
from mr.server.openai import params, results
from mr.server.openai.merge import finished, merge
from mr.server.openai.protocol import Completion, CompletionChoice, CompletionLogprobs, CompletionRequest
from mr.server.openai.streams import finish_all, sse_response, submit_all
from mr.server.wire import Capture, DirectWriter, Wire, capture_of, engine_wire, go_direct, wire_of

Prompt = str | list[int]


def prompts(req: CompletionRequest) -> list[Prompt]:
    p = req.prompt
    if isinstance(p, str):
        return [params.checked_text(p, "prompt")]
    if not p:
        raise invalid("prompt", "prompt must not be empty")
    return token_or_text_batch(p, "prompt")


def token_or_text_batch(items: list[str | int | list[int]], param: str) -> list[Prompt]:
    """[ids...] is one token prompt; otherwise a list of texts or of token lists."""
    if all(isinstance(x, int) for x in items):
        return [[int(x) for x in items]]  # type: ignore[arg-type]
    out: list[Prompt] = []
    for item in items:
        if isinstance(item, int):
            raise invalid(param, f"{param} mixes token ids and texts")
        if isinstance(item, list) and not item:
            raise invalid(param, f"{param} must not contain empty token lists")
        out.append(params.checked_text(item, param) if isinstance(item, str) else list(item))
    return out


def _check(req: CompletionRequest) -> None:
    if req.best_of is not None and req.best_of != req.n:
        raise invalid("best_of", "best_of must equal n (ranking candidates is not supported)")
    if req.suffix:
        raise invalid("suffix", "suffix (fill-in-the-middle) is not supported")


def _encode(llm: LLM, items: list[Prompt]) -> list[np.ndarray]:
    """Every prompt as token ids (blocking: run in a worker thread). Out-of-range ids are a 400."""
    try:
        limits.check_texts(items, "prompts")
    except InvalidArgumentError as exc:
        raise invalid("prompt", str(exc)) from None
    out = []
    for prompt in items:
        try:
            out.append(llm.tokenize(prompt) if isinstance(prompt, str) else llm.prompt_tokens(prompt))
        except InvalidArgumentError as exc:
            raise invalid("prompt", str(exc)) from None
    return out


def _submit(lease: Lease, data: CompletionRequest, encoded: list[np.ndarray], limit: int,
            stop: list[str], direct: tuple[sse.ChunkFrames, Wire] | None,
            engine: tuple[int, int] | None = None) -> list[AsyncStream]:
    """n streams per prompt (seed + i); with `direct`, rendering their frames in the engine
    (and with `engine`, mr.server.wire.engine_wire, letting it send them). The model's own
    defaults fill in what the request left unset; a raw prompt takes no system prompt."""
    llm, own = lease.llm, model_defaults(lease)

    def start(prompt: np.ndarray, i: int, index: int) -> Callable[[], AsyncStream]:
        gen = own.apply(data, params.sampling(data, llm.model.n_vocab, i), limit, stop)
        frame = direct[0].text_frame(index, sse.TEXT_KEY, direct[1].chunked) if direct else None
        return lambda: llm.agenerate(prompt, gen.sampling, max_tokens=gen.max_tokens, stop=gen.stop,
                                     ignore_eos=data.ignore_eos, logprobs=data.logprobs, frame=frame,
                                     wire=engine)

    starts = (start(prompt, i, p * data.n + i) for p, prompt in enumerate(encoded) for i in range(data.n))
    return submit_all(lease, starts)


@post("/completions", summary="Create a text completion", tags=["OpenAI"], status_code=200)
async def completions(request: Req, data: Annotated[CompletionRequest, Body()]) -> Response[Any]:
    ctx = server_context(request)
    await params.log_unknown_fields(request, CompletionRequest)
    _check(data)
    items = prompts(data)
    limit = params.max_tokens(data, "max_tokens")  # validated before a model is loaded
    stop = params.stops(data.stop)
    lease = await ctx.runner.acquire(data.model)
    try:  # every failure before the streams exist releases the lease here
        params.check_fits(len(items) * data.n, lease.model.n_slots, ctx.runner.config.max_queue, "n")
        encoded = await asyncio.to_thread(_encode, lease.llm, items)
        echoes = [_echo(lease.llm, p) if data.echo else "" for p in items for _ in range(data.n)]
    except BaseException:
        lease.release()
        raise
    want_lp = data.logprobs is not None
    if data.stream:
        include_usage = bool(data.stream_options and data.stream_options.include_usage)
        frames = sse.ChunkFrames(results.new_id("cmpl"), int(time.time()), data.model, "text_completion",
                                 include_usage)
        wire = None if want_lp else wire_of(request.scope)
        engine = engine_wire(wire, len(items) * data.n, capture_of(request.scope))
        streams = _submit(lease, data, encoded, limit, stop, (frames, wire) if wire else None, engine)
        timer = ctx.metrics.stream_timer(wire is not None)
        if wire is not None:
            choices = _direct_frames(streams, frames, echoes, wire, timer, capture_of(request.scope))
        else:
            choices = _choice_frames(streams, frames, echoes, want_lp, timer)
        body = sse_response(ctx, lease, streams, frames, include_usage, choices, timer)
        body = sse.guarded(body, lambda: finish_all(lease, streams))
        return Stream(body, media_type=sse.MEDIA_TYPE, headers=sse.HEADERS)
    streams = _submit(lease, data, encoded, limit, stop, None)
    try:
        work = _collect(ctx, streams, data.model, echoes, want_lp, lease.model.name)
        result = await until_disconnect(request, work, lambda: [s.close() for s in streams])
    finally:
        finish_all(lease, streams)
    return Response(sse.encode(result), media_type="application/json")


def _echo(llm: LLM, prompt: Prompt) -> str:
    return prompt if isinstance(prompt, str) else llm.detokenize(prompt)


def _logprobs(items: list[TokenLogprob], offset: int) -> CompletionLogprobs:
    tokens, offsets = [], []
    for t in items:
        offsets.append(offset)
        piece = t.text.decode("utf-8", "replace")
        tokens.append(piece)
        offset += len(piece)
    tops = [{a.text.decode("utf-8", "replace"): a.logprob for a in t.top} for t in items]
    return CompletionLogprobs(tokens=tokens, token_logprobs=[t.logprob for t in items],
                              top_logprobs=tops, text_offset=offsets)


async def _collect(ctx: ServerContext, streams: list[AsyncStream], model: str, echoes: list[str],
                   want_lp: bool, label: str) -> Completion:
    texts = await asyncio.gather(*(s.text() for s in streams))
    choices = [
        CompletionChoice(index=i, text=echoes[i] + text,
                         logprobs=_logprobs(s.logprobs, len(echoes[i])) if want_lp else None,
                         finish_reason=results.finish_reason(s.finish_reason))
        for i, (s, text) in enumerate(zip(streams, texts, strict=True))
    ]
    usage = results.usage([s.usage for s in streams])
    ctx.metrics.usage(label, usage)
    return Completion(id=results.new_id("cmpl"), created=int(time.time()), model=model,
                      choices=choices, usage=usage)


async def _direct_frames(streams: list[AsyncStream], frames: sse.ChunkFrames, echoes: list[str],
                         wire: Wire, timer: StreamTimer, capture: Capture | None) -> AsyncIterator[bytes]:
    """Echoes through ASGI, then the engine's frames straight to the socket (mr.server.wire),
    then each choice's finish frame through ASGI as it ends."""
    for i, echo in enumerate(echoes):
        if echo:
            yield frames.choice(i, sse.text_body(echo))
    # On the first resumption the response has started (headers and echoes are on the wire).
    write = DirectWriter(wire, timer.times, lambda: [s.close() for s in streams], capture)
    go_direct(streams, write, wire)
    async for i in finished(streams):
        timer.engine_frames += write.engine_sent(streams[i].wire_end)
        yield frames.choice(i, sse.text_body(""), results.finish_reason(streams[i].finish_reason))


async def _choice_frames(streams: list[AsyncStream], frames: sse.ChunkFrames, echoes: list[str],
                         want_lp: bool, timer: StreamTimer) -> AsyncIterator[bytes]:
    sent = [0] * len(streams)
    offsets = [len(e) for e in echoes]
    for i, echo in enumerate(echoes):
        if echo:
            yield frames.choice(i, sse.text_body(echo))
    async for i, piece in merge(streams):
        if piece is None:
            yield frames.choice(i, sse.text_body(""), results.finish_reason(streams[i].finish_reason))
            continue
        timer.token()
        lp = None
        if want_lp and len(streams[i].logprobs) > sent[i]:
            lp = sse.encode(_logprobs(streams[i].logprobs[sent[i]:], offsets[i]))
            sent[i] = len(streams[i].logprobs)
        offsets[i] += len(piece)
        yield frames.choice(i, sse.text_body(piece), None, lp)


__all__ = ["completions"]
