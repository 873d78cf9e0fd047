"""Decoded media, as the engine takes them, and the bounds a request's media must keep."""

from __future__ import annotations

import msgspec


class Image(msgspec.Struct, frozen=True):
    """An image decoded to 8-bit RGB, row-major (width * height * 3 bytes).

    digest: sha256 (hex) of the size and the pixels: the prefix cache keys the image by it, so
    the same picture sent again (in any encoding) is reused, and two pictures never collide."""

    rgb: bytes
    width: int
    height: int
    digest: str


class Audio(msgspec.Struct, frozen=True):
    """An audio clip decoded to mono float32 PCM (little-endian bytes) at `sample_rate` Hz, the
    projector's own rate. digest: sha256 (hex) of the rate and the samples."""

    pcm: bytes
    sample_rate: int
    digest: str

    @property
    def seconds(self) -> float:
        return len(self.pcm) / 4 / self.sample_rate


Media = Image | Audio


class MediaLimits(msgspec.Struct, frozen=True):
    """Per-request bounds, checked before any decoding work that they bound.

    max_items: images and audio clips in one request.
    max_bytes: encoded bytes of one item (after base64).
    max_pixels: width * height of one image, read from its header before it is decoded (a
      decompression bomb is refused, not decoded).
    max_audio_seconds: the duration of one clip, read from its header where the format has one,
      and enforced while decoding.
    remote: whether http(s) URLs may be fetched (`mr serve --allow-remote-media`); off, they are
      refused with a 400. remote_timeout_s bounds a whole fetch (connect to last byte)."""

    max_items: int = 16
    max_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 8192 * 8192
    max_audio_seconds: float = 600.0
    remote: bool = False
    remote_timeout_s: float = 15.0
