"""Media files the tests write themselves: a decompression bomb's first bytes."""

from __future__ import annotations

import struct
import zlib


def bomb_png(width: int = 60000, height: int = 60000) -> bytes:
    """A valid PNG header (and an empty IDAT) that claims width x height pixels: a few dozen
    bytes that a decoder without a pixel bound would try to allocate gigabytes for."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    body = chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + body
