"""Request-body helpers every API's converter shares."""

from __future__ import annotations

import logging
import os

import msgspec

from mr.server.context import Req
from mr.server.errors import invalid

log = logging.getLogger("mr.server")
_seen_unknown: set[str] = set()


def checked_text(text: str, param: str) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise invalid(param, f"{param} is not valid Unicode (lone surrogate)") from None
    return text


def new_id(prefix: str) -> str:
    """`msg_…`, `resp_…`: the underscore spelling Anthropic's and the Responses API's ids use."""
    return f"{prefix}_{os.urandom(12).hex()}"


async def log_unknown_fields(request: Req, known: type[msgspec.Struct]) -> None:
    """Unknown fields are ignored; say so once per name (the APIs grow; clients send extras)."""
    try:
        keys = msgspec.json.decode(await request.body(), type=dict[str, msgspec.Raw]).keys()
    except msgspec.DecodeError:
        return
    fields = set(known.__struct_fields__)
    for key in sorted(keys - fields - _seen_unknown)[:8]:
        if len(_seen_unknown) < 256:
            _seen_unknown.add(key)
        log.info("ignoring unknown request field %r on %s", key, request.url.path)
