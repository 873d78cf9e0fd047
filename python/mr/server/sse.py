"""Server-sent events from pre-encoded bytes.

A chunk's constant part (id, object, created, model) is encoded once per request; each token
then costs one msgspec encode of its delta and a bytes join. Frames are `data: <json>\n\n`, the
stream ends with `data: [DONE]\n\n`.
"""

from __future__ import annotations

import weakref
from collections.abc import AsyncIterator, Callable

import msgspec

DONE = b"data: [DONE]\n\n"
HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
MEDIA_TYPE = "text/event-stream"

_encoder = msgspec.json.Encoder()
encode = _encoder.encode
_NULL = b"null"


def frame(payload: bytes) -> bytes:
    return b"data: " + payload + b"\n\n"


def event(obj: object) -> bytes:
    return b"data: " + encode(obj) + b"\n\n"


class ChunkFrames:
    """`data: {..."choices":[{"index":I,<body>}]...}` frames for one streamed response.

    `object_name` is "chat.completion.chunk" or "text_completion". With include_usage every
    chunk carries `"usage":null` and `usage_frame` sends the totals with empty choices (OpenAI)."""

    def __init__(self, response_id: str, created: int, model: str, object_name: str,
                 include_usage: bool) -> None:
        self._head = b"".join((
            b'data: {"id":', encode(response_id), b',"object":', encode(object_name),
            b',"created":', str(created).encode(), b',"model":', encode(model),
            b',"system_fingerprint":"mr","choices":[',
        ))
        self._tail = b'],"usage":null}\n\n' if include_usage else b"]}\n\n"

    def choice(self, index: int, body: bytes, finish_reason: str | None = None,
               logprobs: bytes | None = None) -> bytes:
        """`body` is the encoded inside of the choice after "index", e.g. `"delta":{...}`."""
        return b"".join((
            self._head, b'{"index":', str(index).encode(), b",", body,
            b',"logprobs":', logprobs or _NULL,
            b',"finish_reason":', encode(finish_reason) if finish_reason else _NULL,
            b"}", self._tail,
        ))

    def text_frame(self, index: int, key: bytes, chunked: bool) -> tuple[bytes, bytes, bool]:
        """The (head, tail, chunked) frame format the engine renders a choice's text pieces with:
        `choice(index, <key> + encode(text))` byte for byte, `key` being e.g. `"delta":{"content":`
        (its closing braces follow the string)."""
        closing = b"}" * key.count(b"{")
        return (self._head + b'{"index":' + str(index).encode() + b"," + key + b'"',
                b'"' + closing + b',"logprobs":null,"finish_reason":null}' + self._tail, chunked)

    def usage_frame(self, usage: object) -> bytes:
        return self._head + b'],"usage":' + encode(usage) + b"}\n\n"


CONTENT_KEY = b'"delta":{"content":'
TEXT_KEY = b'"text":'


def delta_content(text: str) -> bytes:
    return b'"delta":{"content":' + encode(text) + b"}"


def delta_obj(delta: object) -> bytes:
    return b'"delta":' + encode(delta)


def text_body(text: str) -> bytes:
    return b'"text":' + encode(text)


ROLE_DELTA = b'"delta":{"role":"assistant","content":""}'
EMPTY_DELTA = b'"delta":{}'


def guarded(body: AsyncIterator[bytes], cleanup: Callable[[], None]) -> AsyncIterator[bytes]:
    """`body`, with `cleanup` run even if it is dropped unstarted (a client gone before the first
    byte): the generator's own `finally` covers every other case. `cleanup` must be idempotent."""
    finalizer = weakref.finalize(body, cleanup)
    finalizer.atexit = False
    return body
