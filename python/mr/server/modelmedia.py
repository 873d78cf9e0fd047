"""What a stored model takes besides text: "vision" and "audio" (Ollama's capability names), read
from its multimodal projector's GGUF header, for the model listings of every API."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mr.store import Store
    from mr.store.model import LocalModel

_VISION, _AUDIO = "clip.has_vision_encoder", "clip.has_audio_encoder"


def media_capabilities(store: Store, model: LocalModel) -> list[str]:
    """["vision"], ["audio"], both or none. Blocking (reads the projector's header, once per
    blob: gguf_meta keeps it): call it from a worker thread."""
    from mr.store.gguf_meta import GGUFFormatError, read_header

    layer = model.manifest.projector
    if layer is None:
        return []
    try:
        kv = read_header(store.blobs.path(layer.digest)).kv
    except (GGUFFormatError, OSError):
        return ["vision"]  # as `mr show` says of any projector: loading it will tell the truth
    # projectors from before audio encoders carry neither key, and are vision encoders
    vision = kv.get(_VISION) == "true" or (_VISION not in kv and _AUDIO not in kv)
    return [name for name, on in (("vision", vision), ("audio", kv.get(_AUDIO) == "true")) if on]


def with_media(capabilities: list[str], media: list[str]) -> list[str]:
    """`capabilities` with the projector's own in place of any guess (the store's summary says
    "vision" of every projector, an audio-only one too)."""
    return [c for c in capabilities if c not in ("vision", "audio")] + media


def capabilities(store: Store, model: LocalModel) -> list[str]:
    """The model's capabilities as `mr show` names them (completion, tools, reasoning, ...), with
    what its projector takes. Blocking."""
    from mr.store import summary

    guessed = summary.capabilities(model, summary.chat_template(model))
    return with_media(guessed, media_capabilities(store, model))
