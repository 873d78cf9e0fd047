"""Images and audio in requests, for every API: the content parts its converter makes, and the
checks made once the model is leased.

A converter never decodes: each item becomes a media part (mr.media.source) that carries its
bytes as a `data:` URL (a base64 field is wrapped in one, a copy that costs a memcpy), or the
client's remote URL. mr.media decodes them in the worker thread that renders the prompt
(LLM.prepare_chat), with the base64 length, the pixels and the duration bounded before any work
they bound, so no client stalls the event loop with a large picture. Every refusal names the
request field as the client wrote it (`messages[0].content[1]`).
"""

from __future__ import annotations

import re

from mr.engine.media import text_only
from mr.errors import InvalidArgumentError
from mr.jsontypes import JSON
from mr.media.source import MediaKind, MediaSource, part, source_of
from mr.media.urls import shown
from mr.server.errors import invalid

# A MIME type as a data URL may carry it (mr.media.urls checks it again when it parses the URL).
_MIME = re.compile(r"[A-Za-z0-9!#$&^_.+-]+/[A-Za-z0-9!#$&^_.+-]+")
AUDIO_FORMATS = ("wav", "mp3", "flac")
_SCHEMES = ("data:", "http://", "https://")


def url_part(kind: MediaKind, url: str, field: str) -> JSON:
    """An item sent by URL: a `data:` URL (decoded later, bounded), or an http(s) URL that the
    server fetches only where `mr serve --allow-remote-media` says so (else a 400 saying how)."""
    url = url.strip()
    if not url:
        raise invalid(field, f"{field}: the {kind} URL is empty")
    if not url[:8].lower().startswith(_SCHEMES):
        raise invalid(field, f"{field}: the {kind} URL must be a data: URL "
                             f"(data:<type>;base64,<data>) or an http(s) URL, not {shown(url, 40)!r}")
    return part(MediaSource(kind=kind, field=field, url=url))


def base64_part(kind: MediaKind, data: str, field: str, mime: str = "", fmt: str | None = None) -> JSON:
    """An item sent as a base64 field (Ollama's `images`, Anthropic's base64 source, OpenAI's
    `input_audio`): carried as a data URL, so that it is decoded off the loop, its length bounded
    before a byte is decoded, and a malformed one refused naming `field`."""
    if not data:
        raise invalid(field, f"{field}: the {kind} data is empty")
    if mime and not _MIME.fullmatch(mime):
        raise invalid(field, f"{field}: the media type {mime[:40]!r} is malformed")
    url = f"data:{mime};base64,{data}"
    return part(MediaSource(kind=kind, field=field, url=url, format=fmt or mime or None))


def audio_part(data: str, fmt: str, field: str) -> JSON:
    """OpenAI's `input_audio` ({data: base64, format}): WAV, MP3 or FLAC."""
    fmt = fmt.lower()
    if fmt not in AUDIO_FORMATS:
        name = f"{field}.input_audio.format"
        raise invalid(name, f"{name} must be {', '.join(AUDIO_FORMATS[:-1])} or {AUDIO_FORMATS[-1]}, "
                            f"not {fmt[:20]!r}")
    return base64_part("audio", data, field, f"audio/{fmt}", fmt)


def content(parts: list[JSON]) -> str | list[JSON]:
    """A message's content from text and media parts in order: the texts joined by newlines when
    there is no media (the prompt of a text request is what it always was), else the list."""
    if any(source_of(p) is not None for p in parts):
        return parts
    return "\n".join(str(p["text"]) for p in parts)


def text_part(text: str) -> JSON:
    return {"type": "text", "text": text}


def sources(messages: list[JSON]) -> list[MediaSource]:
    """Every media item of the messages, in prompt order."""
    out: list[MediaSource] = []
    for message in messages:
        items = message.get("content") if isinstance(message, dict) else None
        if isinstance(items, list):
            out.extend(s for s in map(source_of, items) if s is not None)
    return out


def check_accepted(messages: list[JSON], accepts: frozenset[str], model: str) -> None:
    """Refuse, before anything is decoded, media that `model` cannot take: any media without a
    projector, audio to a projector with no audio encoder (images likewise). Never dropped."""
    for source in sources(messages):
        if source.kind in accepts:
            continue
        if not accepts:
            raise text_only(source, model=model)
        takes = " and ".join(sorted(accepts))
        raise _refused(source, f"{model} takes no {source.kind} input (its multimodal projector encodes "
                               f"{takes} only)")


def _refused(source: MediaSource, why: str) -> InvalidArgumentError:
    return invalid(source.field, f"{source.field}: {why}")
