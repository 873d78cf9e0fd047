"""ASGI middleware that records inference requests into the RequestLog, without changing them."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeGuard

import msgspec
from litestar.enums import ScopeType
from litestar.types import ASGIApp, HTTPRequestEvent, HTTPScope, Message, Receive, ReceiveMessage, Scope, Send

from mr.server.requestlog.log import Record, RequestLog
from mr.server.requestlog.usage import token_counts
from mr.server.wire import CAPTURE_KEY, attach

# The routes that run a model (the same at each prefix they are mounted at).
_SUFFIXES = ("/chat/completions", "/completions", "/embeddings", "/rerank", "/score", "/messages",
             "/responses", "/api/chat", "/api/generate", "/api/embed", "/api/embeddings")
TAIL = 16 << 10  # the response's last bytes, where streams put their usage


def recorded(scope: Scope) -> TypeGuard[HTTPScope]:
    return scope["type"] == ScopeType.HTTP and scope["method"] == "POST" and scope["path"].endswith(_SUFFIXES)


def _model_of(body: bytes) -> str | None:
    try:
        obj = msgspec.json.decode(body)
    except (msgspec.DecodeError, RecursionError):  # not JSON, or nested past msgspec's limit
        return None
    model = obj.get("model") if isinstance(obj, dict) else None
    return model if isinstance(model, str) and model else None


class _Exchange:
    """What one request sent and got back, gathered as it passes through."""

    def __init__(self, log: RequestLog) -> None:
        self.log = log
        self.started_at = time.time()
        self.start = time.perf_counter()
        self.first_byte: float | None = None
        self.request = bytearray()
        self.head = bytearray()
        self.tail = bytearray()
        self.response_bytes = 0
        self.status = 500
        self.content_type = ""

    def request_chunk(self, message: HTTPRequestEvent) -> None:
        self.request += message.get("body", b"")

    def response_message(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            headers = dict(message.get("headers") or [])
            self.content_type = headers.get(b"content-type", b"").decode("latin-1")
        elif message["type"] == "http.response.body":
            chunk = message.get("body", b"")
            if self.first_byte is None and chunk:
                self.first_byte = time.perf_counter()
            self.response_bytes += len(chunk)
            if len(self.head) < self.log.body_limit:
                self.head += chunk[: self.log.body_limit - len(self.head)]
            self.tail = (self.tail + chunk)[-TAIL:]

    def direct_chunk(self, data: bytes, chunked: bool) -> None:
        """A frame written past ASGI (mr.server.wire), HTTP chunk framing and all: counted, and
        kept while the head has room (the stream's end, with its usage, comes through ASGI)."""
        start, end = (data.index(b"\r\n") + 2, len(data) - 2) if chunked else (0, len(data))
        if self.first_byte is None:
            self.first_byte = time.perf_counter()
        self.response_bytes += end - start
        if len(self.head) < self.log.body_limit:
            self.head += data[start:min(end, start + self.log.body_limit - len(self.head))]

    def room(self) -> int:
        return max(0, self.log.body_limit - len(self.head))

    def direct_payload(self, payload: bytes, n_bytes: int, first_sent: float | None) -> None:
        """Frames the engine sent to the socket itself: their payload (capped there), counted."""
        if first_sent is not None and (self.first_byte is None or first_sent < self.first_byte):
            self.first_byte = first_sent
        self.response_bytes += n_bytes
        if len(self.head) < self.log.body_limit:
            self.head += payload[: self.log.body_limit - len(self.head)]

    def record(self, scope: HTTPScope) -> Record | None:
        model = _model_of(bytes(self.request))
        if model is None:
            return None
        stream = self.content_type.startswith(("text/event-stream", "application/x-ndjson"))
        prompt, completion = token_counts(bytes(self.tail), self.content_type)
        end = time.perf_counter()
        return Record(
            id=self.log.next_id(), model=model, method=scope["method"], path=scope["path"],
            status=self.status, started_at=self.started_at, duration_ms=round((end - self.start) * 1e3, 2),
            ttfb_ms=None if self.first_byte is None else round((self.first_byte - self.start) * 1e3, 2),
            stream=stream, prompt_tokens=prompt, completion_tokens=completion,
            request=self.log.text(bytes(self.request)), response=self.log.text(bytes(self.head)),
            request_bytes=len(self.request), response_bytes=self.response_bytes,
            truncated=len(self.request) > self.log.body_limit or self.response_bytes > self.log.body_limit)


def _keep(log: RequestLog, exchange: _Exchange, scope: HTTPScope) -> None:
    """Record the exchange; the log must never fail the request it watches."""
    try:
        record = exchange.record(scope)
    except Exception:
        logging.getLogger("mr.server").exception("the request log could not record %s", scope["path"])
        return
    if record is not None:
        log.add(record)


def requestlog_middleware(log: RequestLog | None) -> Callable[[ASGIApp], ASGIApp]:
    """ASGI middleware factory; a no-op when there is no log or it is off (size 0)."""

    def factory(app: ASGIApp) -> ASGIApp:
        async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
            if log is None or not log.enabled or not recorded(scope):
                await app(scope, receive, send)
                return
            exchange = _Exchange(log)
            extensions = scope.get("extensions")
            if extensions is None:
                scope["extensions"] = extensions = {}
            attach(extensions, CAPTURE_KEY, exchange)

            async def receive_wrapper() -> ReceiveMessage:
                message = await receive()
                if message["type"] == "http.request":
                    exchange.request_chunk(message)
                return message

            async def send_wrapper(message: Message) -> None:
                exchange.response_message(message)
                await send(message)

            try:
                await app(scope, receive_wrapper, send_wrapper)
            finally:
                _keep(log, exchange, scope)

        return middleware

    return factory
