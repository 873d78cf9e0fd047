"""The log itself: a bounded deque of records per model, and what one record holds.

Every part a client can grow is bounded: the records per model, the number of models (the one
used least recently goes first), and the bytes of all records together (the oldest go first),
counted as GET /engines/requests sends them. A model gets a ring of its own with its first
successful request; the failures of the others (unknown names, bad requests) share one ring, so
that made-up names cannot push out the log of the models that serve.
"""

from __future__ import annotations

import itertools
import re
import threading
from collections import OrderedDict, deque

import msgspec

REDACTED = "[redacted]"
MAX_MODELS = 64  # rings kept (each an exact model name, or a spelling a client sent and that worked)
DEFAULT_MAX_BYTES = 16 << 20
SHARED = None  # the ring of the failed requests of models without a ring of their own
_SECRET_FIELD = re.compile(
    r'("(?:api[_-]?key|authorization|password|secret|token[_-]?secret|access[_-]?token)"\s*:\s*)"(?:[^"\\]|\\.)*"',
    re.IGNORECASE)


class Record(msgspec.Struct, kw_only=True):
    id: int
    model: str
    method: str
    path: str
    status: int
    started_at: float  # wall-clock seconds
    duration_ms: float
    ttfb_ms: float | None  # until the first response byte
    stream: bool
    prompt_tokens: int | None
    completion_tokens: int | None
    request: str  # the body as text, capped
    response: str
    request_bytes: int  # the body's whole size
    response_bytes: int
    truncated: bool = False


Key = str | None  # a model's ring, or SHARED


class RequestLog:
    """Thread-safe: records are appended from the event loop and read by the route."""

    def __init__(self, per_model: int, body_limit: int, secrets: tuple[str, ...] = (),
                 max_bytes: int = DEFAULT_MAX_BYTES, max_models: int = MAX_MODELS) -> None:
        self.per_model = per_model
        self.body_limit = body_limit
        self.max_bytes = max_bytes
        self.max_models = max(1, max_models)
        self._secrets = tuple(s for s in secrets if s)
        self._rings: OrderedDict[Key, deque[Record]] = OrderedDict()  # least recently used first
        self._sizes: OrderedDict[int, tuple[Key, int]] = OrderedDict()  # id -> (ring, bytes), oldest first
        self._bytes = 0
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.per_model > 0 and self.max_bytes > 0

    @property
    def size(self) -> tuple[int, int]:
        """(rings, bytes) held now."""
        with self._lock:
            return len(self._rings), self._bytes

    def next_id(self) -> int:
        return next(self._ids)

    def text(self, body: bytes) -> str:
        """The body as text, capped at body_limit bytes, with credentials removed."""
        text = body[: self.body_limit].decode("utf-8", "replace")
        text = _SECRET_FIELD.sub(lambda m: m.group(1) + f'"{REDACTED}"', text)
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return text

    def add(self, record: Record) -> None:
        if not self.enabled:
            return
        name = _key(record.model)
        size = len(msgspec.json.encode(record)) + 1  # as the route sends it, with its comma
        with self._lock:
            key: Key = name if name in self._rings or record.status < 400 else SHARED
            ring = self._ring(key)
            if len(ring) >= self.per_model:
                self._forget(ring.popleft())
            ring.append(record)
            self._sizes[record.id] = (key, size)
            self._bytes += size
            self._trim()

    def _ring(self, key: Key) -> deque[Record]:
        """The ring for `key`, made (after the least recently used one goes, if need be) or moved
        to the recent end."""
        ring = self._rings.get(key)
        if ring is not None:
            self._rings.move_to_end(key)
            return ring
        while len(self._rings) >= self.max_models:
            _, old = self._rings.popitem(last=False)
            for record in old:
                self._forget(record)
        ring = self._rings[key] = deque()
        return ring

    def _forget(self, record: Record) -> None:
        self._bytes -= self._sizes.pop(record.id)[1]

    def _trim(self) -> None:
        """Drop the oldest records until the bytes fit (the oldest of all is its ring's oldest)."""
        while self._bytes > self.max_bytes and self._sizes:
            key = next(iter(self._sizes.values()))[0]
            ring = self._rings[key]
            self._forget(ring.popleft())
            if not ring:
                del self._rings[key]

    def records(self, model: str | None = None, after: int = 0) -> list[Record]:
        """Oldest first; only those for `model` (any spelling of its name) when given."""
        key = _key(model) if model else None
        shared: list[Record] = []
        with self._lock:
            if key is None:
                out = [r for ring in self._rings.values() for r in ring]
            else:
                out, shared = list(self._rings.get(key, ())), list(self._rings.get(SHARED, ()))
        # the model's failures from before it had a ring (their names matched outside the lock)
        out += [r for r in shared if _key(r.model) == key]
        return sorted((r for r in out if r.id > after), key=lambda r: r.id)


def _key(model: str) -> str:
    """One key for every spelling of a name (smollm2, ai/smollm2, docker.io/ai/smollm2:latest)."""
    from mr.store.reference import normalise

    try:
        return normalise(model)
    except Exception:  # an ID or a name the store would refuse: keep it as given
        return model
