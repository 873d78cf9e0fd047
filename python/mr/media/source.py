"""What a request hands the engine for one image or audio clip, before anything is decoded.

Each API's converter (OpenAI `image_url` / `input_audio`, Ollama `images`, Anthropic `image`
blocks, Responses `input_image`) turns a media part into a MediaSource and puts it into the
OpenAI-shaped message as a content part `{"type": "media", "source": MediaSource}`. Decoding
(mr.media.load) happens later, in the worker thread that renders the prompt: never on the event
loop, and never by a C decoder (Pillow for images, a maintained library for audio).
"""

from __future__ import annotations

from typing import Literal

import msgspec

MediaKind = Literal["image", "audio"]
PART_TYPE = "media"  # the content part's "type"


class MediaSource(msgspec.Struct, frozen=True):
    """One image or audio clip as the client sent it.

    data: the encoded bytes (a data URL's or base64 field's payload, already base64-decoded), or
    None when `url` names a remote http(s) resource (fetched only where the server allows it).
    format: the client's hint ("png", "wav", a data URL's MIME type, ...), or None.
    field: the request field it came from (`messages[0].content[1]`), named by every refusal.
    """

    kind: MediaKind
    field: str
    data: bytes | None = None
    url: str | None = None
    format: str | None = None


def part(source: MediaSource) -> dict[str, object]:
    """The content part that carries `source` through the OpenAI-shaped messages."""
    return {"type": PART_TYPE, "source": source}


def source_of(part: object) -> MediaSource | None:
    """The MediaSource a content part carries, or None for any other part."""
    if isinstance(part, dict) and part.get("type") == PART_TYPE:
        source = part.get("source")
        return source if isinstance(source, MediaSource) else None
    return None
