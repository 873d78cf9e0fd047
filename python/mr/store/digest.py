"""The one digest validator. Every path built from a digest goes through `validate` first.

Accepted: `sha256:` + 64 lowercase hex, `sha512:` + 128 lowercase hex; nothing else (no upper
case, no `..`, no NUL, no percent-encoding, no whitespace). The check is a full regex match on a
`str`, done before any file call.
"""

from __future__ import annotations

import hashlib
import re
from typing import Protocol, TypeGuard

from mr.store.errors import InvalidDigestError

_HEX_LEN = {"sha256": 64, "sha512": 128}
_PATTERN = re.compile(r"(sha256):([0-9a-f]{64})|(sha512):([0-9a-f]{128})")
SHORT_ID_LEN = 12


class Hasher(Protocol):
    """What the store uses of a hashlib object."""

    @property
    def name(self) -> str: ...
    def update(self, data: bytes, /) -> None: ...
    def hexdigest(self) -> str: ...


def _describe(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def validate(value: object) -> str:
    """Return `value` when it is a well-formed digest, else raise InvalidDigestError."""
    if not isinstance(value, str) or _PATTERN.fullmatch(value) is None:
        raise InvalidDigestError(f"invalid digest: {_describe(value)}")
    return value


def is_valid(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and _PATTERN.fullmatch(value) is not None


def split(value: str) -> tuple[str, str]:
    """(algorithm, hex) of a validated digest; both are safe as path components."""
    algorithm, _, hexpart = validate(value).partition(":")
    return algorithm, hexpart


def hex_of(value: str) -> str:
    return split(value)[1]


def short_id(value: str) -> str:
    """The 12-hex short ID of a model ID."""
    return hex_of(value)[:SHORT_ID_LEN]


def hasher(value: str) -> Hasher:
    """A fresh hashlib object for the digest's algorithm."""
    return hashlib.new(split(value)[0])


def of_bytes(data: bytes, algorithm: str = "sha256") -> str:
    if algorithm not in _HEX_LEN:
        raise InvalidDigestError(f"unsupported digest algorithm: {_describe(algorithm)}")
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


def from_hasher(h: Hasher) -> str:
    return f"{h.name}:{h.hexdigest()}"


def is_short_id(value: str) -> bool:
    return len(value) == SHORT_ID_LEN and re.fullmatch(r"[0-9a-f]{12}", value) is not None
