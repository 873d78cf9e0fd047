"""Images and audio that `mr run` sends from files: `--image PATH`, `--audio PATH`, and `@PATH` words
in the interactive chat.

The CLI only reads the bytes. Decoding is mr.media's (Pillow, libsndfile), in the engine's worker
thread for an in-process run or on the server; an image is decoded here once more, up front, so
a file that is not an image is refused before a model is loaded or a request is sent.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from mr.errors import InvalidArgumentError
from mr.jsontypes import JSON
from mr.units import human_bytes

if TYPE_CHECKING:
    from mr.media import MediaSource

Kind = Literal["image", "audio"]  # mr.media.MediaKind, without importing the decoders

# MIME types by suffix: the formats mr.media decodes (others are refused by what they are, not
# by their name, when they are sent).
IMAGE_TYPES = {"png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg", "webp": "image/webp",
               "gif": "image/gif"}
AUDIO_TYPES = {"wav": "audio/wav", "mp3": "audio/mpeg", "flac": "audio/flac"}
# Pictures and clips in formats mr refuses: an @ word naming one is still taken as media, so the
# refusal says what the file is and what to convert it to (not that it is not UTF-8 text).
OTHER_IMAGES = {"bmp", "tif", "tiff", "heic", "heif", "avif", "ico", "jp2", "qoi"}
OTHER_AUDIO = {"ogg", "oga", "opus", "m4a", "aac", "aiff", "aif", "wma"}

# A word that starts with @; what ends a sentence may follow the path (`what is in @cat.png?`).
_AT_WORD = re.compile(r"(?<!\S)@(\S+)")
_TRAILING = ".,;:!?)]}'\""


@dataclass(frozen=True)
class Attachment:
    """A media file a chat line names with @: the path as typed, and what it holds."""

    name: str
    path: Path
    kind: Kind


def kind_of(path: Path) -> Kind | None:
    """"image" or "audio" by the file's suffix, None for any other file."""
    suffix = path.suffix.lower().lstrip(".")
    if suffix in IMAGE_TYPES or suffix in OTHER_IMAGES:
        return "image"
    return "audio" if suffix in AUDIO_TYPES or suffix in OTHER_AUDIO else None


def read_media(path: Path, kind: Kind, field: str) -> MediaSource:
    """The file as a MediaSource named `field` (`--image cat.png`, `@cat.png`) in every refusal.
    An image's pixels are checked now; audio is checked where it is decoded (at the projector's
    sample rate)."""
    from mr.media import MediaLimits, MediaSource, decode_image

    limits = MediaLimits()
    try:
        size = path.stat().st_size
        if size > limits.max_bytes:  # the bound every backend keeps: never read more than that
            raise _refused(field, f"the file is {human_bytes(size)}, more than the "
                                  f"{human_bytes(limits.max_bytes)} an {kind} may be")
        data = path.read_bytes()
    except OSError as exc:
        raise _refused(field, f"cannot read {path}: {exc.strerror or exc}") from None
    if kind == "image":
        decode_image(data, field, limits)
    return MediaSource(kind, field=field, data=data, format=path.suffix.lower().lstrip(".") or None)


def _refused(field: str, what: str) -> InvalidArgumentError:
    error = InvalidArgumentError(f"{field}: {what}")
    error.param = field
    return error


def media_refused(media: list[MediaSource], why: str) -> InvalidArgumentError:
    """The error for media the model cannot take: why, then which files (exit code 2)."""
    error = InvalidArgumentError(f"{why}; cannot send {', '.join(s.field for s in media)}")
    error.param = media[0].field
    return error


def user_message(text: str, media: list[MediaSource]) -> JSON:
    """The user's turn: plain text, or the media first (as llama.cpp's own CLI places them), then
    the text."""
    if not media:
        return {"role": "user", "content": text}
    from mr.media import part

    content: list[object] = [part(source) for source in media]
    if text.strip():
        content.append({"type": "text", "text": text})
    return {"role": "user", "content": content}


def take_attachments(line: str) -> tuple[str, list[Attachment]]:
    """The line without its @ words that name image or audio files, and those files. Any other
    @ word stays text (an address, a handle, a file the chat sends as text: mr.cli.attach)."""
    found: list[Attachment] = []

    def attach(match: re.Match[str]) -> str:
        word = match.group(1)
        for name in dict.fromkeys((word, word.rstrip(_TRAILING))):
            path = Path(name).expanduser()
            kind = kind_of(path)
            if name and kind is not None and _is_file(path):
                found.append(Attachment(name, path, kind))
                return word[len(name):]  # what followed the path (`?`) stays
        return match.group(0)

    text = _AT_WORD.sub(attach, line)
    if not found:
        return line, []
    # the words' gaps: "look at @a.png and @b.png" -> "look at and"
    return re.sub(r"(?<=\S)[ \t]{2,}(?=\S)", " ", text).strip(), found


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:  # a name too long, a folder it may not read: not a file to attach
        return False


def media_of(messages: list[JSON]) -> list[MediaSource]:
    """Every media item of a conversation, in order."""
    from mr.media import source_of

    return [s for m in messages if isinstance(m.get("content"), list)
            for p in m["content"] if (s := source_of(p)) is not None]


def openai_messages(messages: list[JSON]) -> list[JSON]:
    """The conversation as the OpenAI API takes it: each media part as an `image_url` data URL
    or an `input_audio` part (base64), the rest as it is."""
    from mr.media import source_of

    out: list[JSON] = []
    for message in messages:
        content = message.get("content")
        if not isinstance(content, list):
            out.append(message)
            continue
        parts = []
        for p in content:
            source = source_of(p)
            parts.append(p if source is None else _openai_part(source))
        out.append({**message, "content": parts})
    return out


def _openai_part(source: MediaSource) -> JSON:
    data = base64.b64encode(source.data or b"").decode("ascii")
    fmt = (source.format or "").lower()
    if source.kind == "audio":  # OpenAI names the container: "wav", "mp3" (and mr's "flac")
        return {"type": "input_audio", "input_audio": {"data": data, "format": fmt or "wav"}}
    mime = IMAGE_TYPES.get(fmt) or _sniffed(source.data or b"")
    return {"type": "image_url", "image_url": {"url": f"data:{mime};base64,{data}"}}


def _sniffed(data: bytes) -> str:
    """The MIME type of an image whose file name has no known suffix (the server decodes by the
    bytes, whatever the type says; the type only has to be an image's)."""
    for magic, mime in ((b"\x89PNG", "image/png"), (b"\xff\xd8", "image/jpeg"), (b"GIF8", "image/gif")):
        if data.startswith(magic):
            return mime
    return "image/webp" if data[8:12] == b"WEBP" else "image/png"
