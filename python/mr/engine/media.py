"""Images and audio in a chat: media parts taken out of the messages, decoded, and put back into
the prompt at their places.

An API's converter leaves each media item in the OpenAI-shaped messages as a `media` content
part (mr.media.source). Here, in the worker thread that renders the prompt, each such part
becomes MARKER in its message's text, the template renders the conversation, and the prompt is
cut at the markers: the text between them is tokenized as any prompt is (client text stays
text, mr.engine.prompt), and the projector puts each item's model-specific tokens and media
chunks between the pieces (Projector::build in cpp/include/mr/projector.hpp).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from mr import _native
from mr.errors import InvalidArgumentError
from mr.jsontypes import JSON
from mr.media.source import MediaSource, source_of
from mr.media.types import Audio, Image, MediaLimits

# Stands for one media item in the rendered prompt: a noncharacter of plane 16, which client
# text may not carry in (take_media replaces it there).
MARKER = "\U0010fffe"


class MediaTokens(NamedTuple):
    """A prompt with media: token ids with a placeholder at each media token's place (negative,
    derived from the content's digest), and where each media chunk sits."""

    tokens: np.ndarray
    media: list[_native.MediaSpan]


def take_media(messages: list[JSON]) -> tuple[list[JSON], list[MediaSource]]:
    """`messages` with every media part replaced by MARKER (a content list with media becomes
    one string, its text parts joined by newlines as text-only lists are), and the media in
    prompt order. Messages without media come back as they are."""
    if not any(_has_media(m) for m in messages):
        return messages, []
    sources: list[MediaSource] = []
    out: list[JSON] = []
    for message in messages:
        clean: JSON = _scrubbed(message)
        if _has_media(clean):
            clean["content"] = _joined(clean["content"], sources)
        out.append(clean)
    return out, sources


def _has_media(message: JSON) -> bool:
    content = message.get("content") if isinstance(message, dict) else None
    return isinstance(content, list) and any(source_of(p) is not None for p in content)


def _joined(content: list[JSON], sources: list[MediaSource]) -> str:
    texts = []
    for part in content:
        source = source_of(part)
        if source is not None:
            sources.append(source)
            texts.append(MARKER)
        elif isinstance(part, dict) and isinstance(part.get("text"), str):
            texts.append(part["text"])
    return "\n".join(texts)


def _scrubbed(value: Any) -> Any:
    """A copy in which client text cannot place a media item: MARKER becomes U+FFFD."""
    if isinstance(value, str):
        return value.replace(MARKER, "\ufffd")
    if isinstance(value, list):
        return [_scrubbed(v) for v in value]
    if isinstance(value, dict):
        return {k: _scrubbed(v) for k, v in value.items()}
    return value


def bitmaps(sources: list[MediaSource], projector: _native.Projector,
            limits: MediaLimits) -> list[_native.Bitmap]:
    """Decodes every item (Pillow, an audio library: never a C decoder of llama.cpp's) into the
    bitmaps the projector takes."""
    from mr.media import load_all  # the decoders (Pillow, ...) load with the first media request

    rate = projector.audio_sample_rate if projector.audio else None
    out = []
    for source, item in zip(sources, load_all(sources, limits, rate), strict=True):
        if isinstance(item, Image):
            if not projector.vision:
                raise _refused(source, "this model's projector takes no images")
            out.append(_native.Bitmap.image(item.width, item.height, item.rgb, item.digest))
        elif isinstance(item, Audio):
            out.append(_native.Bitmap.audio(np.frombuffer(item.pcm, dtype=np.float32), item.digest))
    return out


def _refused(source: MediaSource, why: str) -> InvalidArgumentError:
    err = InvalidArgumentError(f"{source.field}: {why}")
    err.param = source.field
    return err


def text_only(source: MediaSource, model: str = "this model") -> InvalidArgumentError:
    """The 400 for media sent to a model without a projector."""
    return _refused(source, f"{model} takes text only (it has no multimodal projector): "
                            "images and audio are not accepted")


def split(prompt: str, n_media: int) -> list[str]:
    """The rendered prompt's text pieces around its media items."""
    pieces = prompt.split(MARKER)
    if len(pieces) != n_media + 1:
        raise InvalidArgumentError(f"the chat template placed {len(pieces) - 1} of the request's {n_media} "
                                   "media items: it cannot render images or audio")
    return pieces
