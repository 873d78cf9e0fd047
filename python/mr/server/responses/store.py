"""The in-memory store behind `store: true` and `previous_response_id`.

Bounded three ways: entries expire after a TTL (an hour by default, as in Docker Model Runner),
and the oldest are dropped when the entry count or the byte total passes its cap. Expiry is
checked on every access and insert, so no timer runs. Everything runs on the event loop.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

import msgspec

from mr.errors import MrError
from mr.jsontypes import JSON
from mr.server.context import Req

if TYPE_CHECKING:
    from mr.server.settings import Settings


@dataclass
class Entry:
    response: JSON  # the Response object, as GET /v1/responses/{id} returns it
    input_items: list[JSON]  # this response's input items, with ids
    conversation: list[JSON]  # engine messages: the chain so far, this input and output
    size: int = 0
    expires_at: float = 0.0

    def measure(self) -> int:
        enc = msgspec.json.encode
        self.size = len(enc(self.response)) + len(enc(self.input_items)) + len(enc(self.conversation))
        return self.size


class ResponseStore:
    def __init__(self, ttl: float, max_entries: int, max_bytes: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._clock = clock
        self._entries: OrderedDict[str, Entry] = OrderedDict()  # oldest first
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    def put(self, response_id: str, entry: Entry) -> bool:
        """Keep `entry`; False when it alone is larger than the byte cap (it is not kept)."""
        self.delete(response_id)
        if entry.measure() > self.max_bytes or self.max_entries <= 0 or self.ttl <= 0:
            return False
        entry.expires_at = self._clock() + self.ttl
        self._entries[response_id] = entry
        self.bytes += entry.size
        self._purge()
        return True

    def get(self, response_id: str) -> Entry | None:
        self._purge()
        return self._entries.get(response_id)

    def delete(self, response_id: str) -> bool:
        entry = self._entries.pop(response_id, None)
        if entry is None:
            return False
        self.bytes -= entry.size
        return True

    def _purge(self) -> None:
        now = self._clock()
        while self._entries:
            oldest_id, oldest = next(iter(self._entries.items()))
            over = len(self._entries) > self.max_entries or self.bytes > self.max_bytes
            if not over and oldest.expires_at > now:
                break  # entries are in insertion order and share one TTL: the rest are newer
            self.delete(oldest_id)


class ResponseNotFoundError(MrError):
    """No stored response has that id (never stored, expired, evicted or deleted)."""

    http_status = 404
    code = "not_found"

    def __init__(self, response_id: str, param: str | None = None) -> None:
        what = "Previous response" if param == "previous_response_id" else "Response"
        super().__init__(f"{what} with id {response_id!r} not found (responses are kept in memory for a "
                         "limited time)")
        self.param = param
        if param == "previous_response_id":
            self.code = "previous_response_not_found"


STORE_KEY = "mr.responses"


def store_for(settings: Settings) -> ResponseStore:
    return ResponseStore(settings.responses_ttl, settings.responses_max_entries, settings.responses_max_bytes)


def store_of(request: Req) -> ResponseStore:
    return cast(ResponseStore, request.app.state[STORE_KEY])  # app.create_app puts it there
