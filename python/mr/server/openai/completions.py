"""POST /v1/completions: raw text completion (no chat template), streamed or not."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from functools import partial
from typing import Annotated, Any

import numpy as np
from litestar import Response, post
from litestar.params import Body
from litestar.response import Stream

from mr.engine import LLM, AsyncStream, TokenLogprob, limits
from mr.errors import InvalidArgumentError
from mr.server import sse
from mr.server.context import Req, ServerContext, server_context
from mr.server.disconnect import until_disconnect
from mr.server.errors import invalid
from mr.server.generation import Direct, Prepared, Running, Text, checked_text, log_unknown_fields, start
from mr.server.metrics import StreamTimer
from mr.server.openai import params, results
from mr.server.openai.merge import finished, merge
from mr.server.openai.protocol import Completion, CompletionChoice, CompletionLogprobs, CompletionRequest
from mr.server.openai.streams import sse_response
from mr.server.wire import DirectWriter, capture_of, go_direct, wire_of

Prompt = str | list[int]


def prompts(req: CompletionRequest) -> list[Prompt]:
    p = req.prompt
    if isinstance(p, str):
        return [checked_text(p, "prompt")]
    if not p:
        raise invalid("prompt", "prompt must not be empty")
    return token_or_text_batch(p, "prompt")


def token_or_text_batch(items: list[str | int | list[int]], param: str) -> list[Prompt]:
    """[ids...] is one token prompt; otherwise a list of texts or of token lists."""
    ids = [x for x in items if isinstance(x, int)]
    if len(ids) == len(items):
        return [[int(x) for x in ids]]
    out: list[Prompt] = []
    for item in items:
        if isinstance(item, int):
            raise invalid(param, f"{param} mixes token ids and texts")
        if isinstance(item, list) and not item:
            raise invalid(param, f"{param} must not contain empty token lists")
        out.append(checked_text(item, param) if isinstance(item, str) else list(item))
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


def prepare(data: CompletionRequest, items: list[Prompt]) -> Prepared[Text]:
    """n streams per prompt (seed + i), tokenized once the model is leased. A raw prompt takes no
    system prompt."""
    return Prepared(model=data.model, input=Text(partial(_encode, items=items), len(items)),
                    sampling=partial(params.sampling, data), fields=data,
                    max_tokens=params.max_tokens(data, "max_tokens"), stop=params.stops(data.stop),
                    ignore_eos=data.ignore_eos, n=data.n, logprobs=data.logprobs)


@post("/completions", summary="Create a text completion", tags=["OpenAI"], status_code=200)
async def completions(request: Req, data: Annotated[CompletionRequest, Body()]) -> Response[Any]:
    ctx = server_context(request)
    await log_unknown_fields(request, CompletionRequest)
    _check(data)
    items = prompts(data)
    prepared = prepare(data, items)  # validated before a model is loaded
    include_usage = bool(data.stream_options and data.stream_options.include_usage)
    frames = sse.ChunkFrames(results.new_id("cmpl"), int(time.time()), data.model, "text_completion",
                             include_usage)
    wire = wire_of(request.scope) if data.stream else None
    direct = Direct(frames, wire, sse.TEXT_KEY, capture_of(request.scope)) if wire is not None else None
    running = await start(ctx, prepared, direct=direct)
    try:
        echoes = [_echo(running.lease.llm, p) if data.echo else "" for p in items for _ in range(data.n)]
    except BaseException:
        running.finish()
        raise
    want_lp = data.logprobs is not None
    if data.stream:
        timer = ctx.metrics.stream_timer(running.direct is not None)
        if running.direct is not None:
            choices = _direct_frames(running, running.direct, echoes, timer)
        else:
            choices = _choice_frames(running.streams, frames, echoes, want_lp, timer)
        body = sse.guarded(sse_response(running, frames, include_usage, choices, timer), running.finish)
        return Stream(body, media_type=sse.MEDIA_TYPE, headers=sse.HEADERS)
    try:
        work = _collect(ctx, running.streams, data.model, echoes, want_lp, running.lease.model.name)
        result = await until_disconnect(request, work, running.close)
    finally:
        running.finish()
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


async def _direct_frames(running: Running[AsyncStream], direct: Direct, echoes: list[str],
                         timer: StreamTimer) -> AsyncIterator[bytes]:
    """Echoes through ASGI, then the engine's frames straight to the socket (mr.server.wire),
    then each choice's finish frame through ASGI as it ends."""
    streams, frames = running.streams, direct.frames
    for i, echo in enumerate(echoes):
        if echo:
            yield frames.choice(i, sse.text_body(echo))
    # On the first resumption the response has started (headers and echoes are on the wire).
    write = DirectWriter(direct.wire, timer.times, running.close, direct.capture)
    go_direct(streams, write, direct.wire)
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
