"""Errors on Anthropic's paths in Anthropic's envelope: {"type": "error", "error": {type, message}}.

Every error the server makes (the security screen, routing, body validation, the handlers) is
written once, in OpenAI's envelope, by mr.server.errors. On an Anthropic path this ASGI
middleware rewrites that body into Anthropic's shape and type names, and turns overload (503)
into Anthropic's 529 `overloaded_error`, so Anthropic's SDKs raise their own error classes.
Only error responses are touched; they are small and never streamed. Routing errors (no such
path, wrong method) are raised before any middleware runs; `routing_errors` wraps their handler.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec
from litestar import Response
from litestar.enums import ScopeType
from litestar.exceptions import HTTPException
from litestar.types import (
    ASGIApp,
    ExceptionHandlersMap,
    HTTPResponseBodyEvent,
    HTTPResponseStartEvent,
    Message,
    Receive,
    Scope,
    Send,
)

from mr.server.anthropic.protocol import ErrorDetail, ErrorOut, encode
from mr.server.context import Req

_PATH = re.compile(r"^(?:/anthropic|/engines(?:/[^/]+)?)?/v1/messages(?:/count_tokens)?/?$")
OVERLOADED = 529
_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
          404: "not_found_error", 405: "invalid_request_error", 413: "request_too_large",
          415: "invalid_request_error", 429: "rate_limit_error", OVERLOADED: "overloaded_error"}


def is_anthropic(path: str) -> bool:
    return path.startswith("/anthropic/") or bool(_PATH.match(path))


def error_type(status: int) -> str:
    return _TYPES.get(status, "invalid_request_error" if status < 500 else "api_error")


class _OpenAIDetail(msgspec.Struct):
    message: str = ""


class _OpenAIError(msgspec.Struct):
    error: _OpenAIDetail


def rewrite(status: int, body: bytes) -> tuple[int, bytes]:
    """(status, body) in Anthropic's form; bodies that are not mr's error envelope pass unchanged."""
    try:
        message = msgspec.json.decode(body, type=_OpenAIError).error.message
    except msgspec.DecodeError:
        return status, body
    if status == 503:
        status = OVERLOADED
    return status, encode(ErrorOut(error=ErrorDetail(type=error_type(status), message=message)))


def anthropic_errors_middleware(app: ASGIApp) -> ASGIApp:
    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP or not is_anthropic(scope["path"]):
            await app(scope, receive, send)
            return
        await app(scope, receive, _rewriting(send))

    return middleware


def _rewriting(send: Send) -> Send:
    held: HTTPResponseStartEvent | None = None
    chunks: list[bytes] = []

    async def wrapped(message: Message) -> None:
        nonlocal held
        if message["type"] == "http.response.start" and message["status"] >= 400:
            held = message
            return
        if held is None or message["type"] != "http.response.body":
            await send(message)
            return
        chunks.append(message.get("body", b""))
        if message.get("more_body", False):
            return
        status, body = rewrite(held["status"], b"".join(chunks))
        headers = [(k, v) for k, v in held.get("headers", []) if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(body)).encode()))
        start: HTTPResponseStartEvent = {**held, "status": status, "headers": headers}
        whole: HTTPResponseBodyEvent = {"type": "http.response.body", "body": body, "more_body": False}
        await send(start)
        await send(whole)

    return wrapped


def routing_errors(handlers: ExceptionHandlersMap) -> ExceptionHandlersMap:
    """`handlers`, with HTTP errors (404 and 405 from routing among them) in Anthropic's
    envelope on Anthropic paths."""
    base = handlers[HTTPException]

    def handle(request: Req, exc: HTTPException) -> Response[Any]:
        response = base(request, exc)
        status = response.status_code
        if is_anthropic(request.url.path) and isinstance(response.content, bytes) and status is not None:
            response.status_code, response.content = rewrite(status, response.content)
        return response

    return {**handlers, HTTPException: handle}
