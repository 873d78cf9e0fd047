"""llama-server's text utilities: POST /tokenize, /detokenize and /apply-template, at the root and
under /engines[/llama.cpp]. Each names its model (mr serves many).

Tokenizing takes time in proportion to the text and to its special tokens: content beyond
mr.engine.limits.MAX_TEXT_CHARS is refused before any of it is tokenized, and the tokenizing, the
pieces and their JSON (all as large as the text) are done in a worker thread, never on the event
loop that serves every other client."""

from __future__ import annotations

import asyncio
from typing import Annotated

import msgspec
from litestar import Response, Router, post
from litestar.params import Body
from msgspec import Meta, Struct

from mr.engine import LLM, limits
from mr.engine.media import MARKER, take_media
from mr.jsontypes import JSON
from mr.server.context import Req, server_context
from mr.server.errors import invalid
from mr.server.generation import checked_text
from mr.server.openai import params
from mr.server.openai.protocol import ChatMessageIn
from mr.server.thinking import from_openai

PREFIXES = ("/", "/engines", "/engines/llama.cpp")
MAX_TOKENS_IN = 1 << 20
MEDIA_MARKER = "<__media__>"  # llama.cpp's (mtmd_default_marker)


class TokenizeRequest(Struct, kw_only=True):
    model: str
    content: str
    add_special: bool = False
    parse_special: bool = True  # llama-server's default: "<|im_start|>" is one token
    with_pieces: bool = False


class Piece(Struct, kw_only=True):
    id: int
    piece: str | list[int]  # the text, or its bytes when they are not valid UTF-8 alone


class DetokenizeRequest(Struct, kw_only=True):
    model: str
    tokens: Annotated[list[int], Meta(max_length=MAX_TOKENS_IN)]


class ApplyTemplateRequest(Struct, kw_only=True):
    model: str
    messages: Annotated[list[ChatMessageIn], Meta(min_length=1)]
    chat_template_kwargs: JSON | None = None
    reasoning_effort: str | None = None


def _piece(token: int, raw: bytes) -> Piece:
    try:
        return Piece(id=token, piece=raw.decode("utf-8"))
    except UnicodeDecodeError:
        return Piece(id=token, piece=list(raw))


def _tokenized(llm: LLM, data: TokenizeRequest) -> bytes:
    """The response body (blocking: call it in a worker thread)."""
    tokens = llm.tokenize(data.content, data.add_special, data.parse_special).tolist()
    if not data.with_pieces:
        return msgspec.json.encode({"tokens": tokens})
    return msgspec.json.encode({"tokens": [_piece(t, llm.model.token_to_piece(t, True)) for t in tokens]})


@post("/tokenize", summary="Text to token ids", tags=["Tokens"], status_code=200)
async def tokenize(request: Req, data: Annotated[TokenizeRequest, Body()]) -> Response[bytes]:
    limits.check_text(data.content, "content", "content")
    checked_text(data.content, "content")
    async with await server_context(request).runner.acquire(data.model) as lease:
        body = await asyncio.to_thread(_tokenized, lease.llm, data)
    return Response(body, media_type="application/json")


@post("/detokenize", summary="Token ids to text", tags=["Tokens"], status_code=200)
async def detokenize(request: Req, data: Annotated[DetokenizeRequest, Body()]) -> dict[str, str]:
    async with await server_context(request).runner.acquire(data.model) as lease:
        n_vocab = lease.llm.model.n_vocab
        bad = next((t for t in data.tokens if not 0 <= t < n_vocab), None)
        if bad is not None:
            raise invalid("tokens", f"token id {bad} is not in [0, {n_vocab})")
        return {"content": await asyncio.to_thread(lease.llm.detokenize, data.tokens)}


@post("/apply-template", summary="Chat messages to the rendered prompt", tags=["Tokens"], status_code=200)
async def apply_template(request: Req, data: Annotated[ApplyTemplateRequest, Body()]) -> dict[str, str]:
    # an image or audio clip shows as llama-server's marker: what is rendered at its place
    messages, _media = take_media(params.messages(data.messages))
    thinking = from_openai(data.reasoning_effort, data.chat_template_kwargs, None)
    async with await server_context(request).runner.acquire(data.model) as lease:
        options = thinking.apply(None, lease.model.think)
        prompt, _stops = await asyncio.to_thread(lease.llm.render_chat, messages, options)
    return {"prompt": prompt.replace(MARKER, MEDIA_MARKER)}


HANDLERS = [tokenize, detokenize, apply_template]


def routers() -> list[Router]:
    return [Router(path=prefix, route_handlers=HANDLERS, include_in_schema=prefix == "/")
            for prefix in PREFIXES]
