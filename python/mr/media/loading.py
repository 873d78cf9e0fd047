"""A request's media, from the MediaSource an API converter made to decoded Image or Audio."""

from __future__ import annotations

from mr.media.audio import decode_audio
from mr.media.images import decode_image
from mr.media.refusal import refusal, size_text
from mr.media.source import MediaSource
from mr.media.types import Audio, Image, MediaLimits
from mr.media.urls import fetch, parse_data_url


def load(source: MediaSource, limits: MediaLimits, sample_rate: int | None = None) -> Image | Audio:
    """Decode one item. sample_rate is the projector's audio rate, None when the model takes no
    audio (an audio source is then a 400). Blocking, and slow for large items or remote URLs:
    call it from a worker thread, never on the event loop."""
    if source.kind == "audio" and sample_rate is None:
        raise refusal(source.field, "this model takes no audio input (its projector has no audio encoder)")
    data = _bytes_of(source, limits)
    if source.kind == "image":
        return decode_image(data, source.field, limits)
    assert sample_rate is not None  # checked above, before any bytes were fetched
    return decode_audio(data, source.format, source.field, sample_rate, limits)


def load_all(
    sources: list[MediaSource], limits: MediaLimits, sample_rate: int | None = None
) -> list[Image | Audio]:
    """Decode a request's media in order, after checking their number (the refusal names the
    first item past the bound, so the client sees where to cut)."""
    if len(sources) > limits.max_items:
        raise refusal(sources[limits.max_items].field,
                      f"the request has {len(sources)} images and audio clips, more than the "
                      f"{limits.max_items} allowed")
    return [load(source, limits, sample_rate) for source in sources]


def _bytes_of(source: MediaSource, limits: MediaLimits) -> bytes:
    """The encoded bytes: inline, from a data URL, or fetched (only where the server allows)."""
    if source.data is not None:
        data = source.data
    elif source.url is None:
        raise refusal(source.field, f"the {source.kind} has neither data nor a URL")
    elif source.url[:5].lower() == "data:":
        _, data = parse_data_url(source.url, source.field, limits)
    else:
        data = fetch(source.url, source.field, limits)
    if len(data) > limits.max_bytes:
        raise refusal(source.field, f"the {source.kind} is {size_text(len(data))}, more than the "
                                    f"{size_text(limits.max_bytes)} allowed")
    return data
