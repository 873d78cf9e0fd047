"""The log itself: a bounded deque of records per model, and what one record holds."""

from __future__ import annotations

import itertools
import re
import threading
from collections import deque

import msgspec

REDACTED = "[redacted]"
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


class RequestLog:
    """Thread-safe: records are appended from the event loop and read by the route."""

    def __init__(self, per_model: int, body_limit: int, secrets: tuple[str, ...] = ()) -> None:
        self.per_model = per_model
        self.body_limit = body_limit
        self._secrets = tuple(s for s in secrets if s)
        self._by_model: dict[str, deque[Record]] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.per_model > 0

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
        with self._lock:
            ring = self._by_model.setdefault(_key(record.model), deque(maxlen=self.per_model))
            ring.append(record)

    def records(self, model: str | None = None, after: int = 0) -> list[Record]:
        """Oldest first; only those for `model` (any spelling of its name) when given."""
        with self._lock:
            rings = [self._by_model.get(_key(model), deque())] if model else list(self._by_model.values())
            out = [r for ring in rings for r in ring if r.id > after]
        return sorted(out, key=lambda r: r.id)


def _key(model: str) -> str:
    """One key for every spelling of a name (smollm2, ai/smollm2, docker.io/ai/smollm2:latest)."""
    from mr.store.reference import normalise

    try:
        return normalise(model)
    except Exception:  # an ID or a name the store would refuse: keep it as given
        return model
