"""Images and audio from untrusted request bytes to what the engine takes (issue 26, item 2).

Each API's converter turns a media part into a MediaSource (source.py); mr.media.load decodes it
in a worker thread: images with Pillow (PNG, JPEG, WebP, GIF's first frame; pixel bound checked
from the header, before decoding), audio with soundfile/libsndfile (WAV, MP3, FLAC; duration
bounded) resampled by soxr, remote URLs only when the server allows them. No untrusted byte
reaches a C decoder of llama.cpp's (stb_image, miniaudio). Every refusal is an
InvalidArgumentError (a 400) whose `param` and message name the request field.

Modules, one job each: source (the undecoded item), types (decoded items, limits), urls (data
URLs, base64, remote fetch), images, audio, loading (the entry points: load, load_all).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from mr.media.source import PART_TYPE, MediaKind, MediaSource, part, source_of
from mr.media.types import Audio, Image, Media, MediaLimits

if TYPE_CHECKING:
    from mr.media.audio import decode_audio
    from mr.media.images import decode_image
    from mr.media.loading import load, load_all
    from mr.media.urls import decode_base64, fetch, parse_data_url

# The decoders (Pillow, soundfile, soxr, httpx: about 0.3 s to import) load with the first use,
# not with `import mr.engine`, which needs only the types.
_LAZY = {"decode_audio": "audio", "decode_image": "images", "load": "loading", "load_all": "loading",
         "decode_base64": "urls", "fetch": "urls", "parse_data_url": "urls"}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'mr.media' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"mr.media.{module}"), name)
    globals()[name] = value  # looked up once
    return value


__all__ = [
    "PART_TYPE",
    "Audio",
    "Image",
    "Media",
    "MediaKind",
    "MediaLimits",
    "MediaSource",
    "decode_audio",
    "decode_base64",
    "decode_image",
    "fetch",
    "load",
    "load_all",
    "parse_data_url",
    "part",
    "source_of",
]
