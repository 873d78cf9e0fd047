"""What `mr show` (and /api/show-like views) say about a stored model, from its package alone:
architecture, size, context, mode and capabilities (as Ollama names them), license, template."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from mr.jsontypes import JSON

if TYPE_CHECKING:
    from mr.store.model import LocalModel

POOLING_RANK = 4
EMBEDDING_POOLINGS = {1, 2, 3}  # mean, CLS, last
MAX_LICENSE = 1 << 20
_REASONING_MARKS = ("<think>", "reasoning_content", "enable_thinking", "<|channel|>")


def gguf_mode(config: JSON) -> str:
    """completion | embedding | reranking, as a package's GGUF header implies (its `gguf` keys):
    llama.cpp marks rerankers with rank pooling and embedding models with mean/CLS/last pooling."""
    kv = config.get("gguf") or {}
    arch = kv.get("general.architecture") or config.get("architecture") or ""
    raw, pooling = kv.get(f"{arch}.pooling_type"), None
    with contextlib.suppress(ValueError):
        pooling = int(raw) if isinstance(raw, (int, float, str)) else None
    if pooling == POOLING_RANK:
        return "reranking"
    if pooling in EMBEDDING_POOLINGS:
        return "embedding"
    return "completion"


def chat_template(model: LocalModel) -> str:
    """The package's template layer (it overrides the GGUF's), else the GGUF's own, else ""
    (for an Ollama artifact: the GGUF's own, else its Go template as it is)."""
    from mr.store import artifact, ollama

    if model.manifest.is_ollama:
        own = (model.config.get("gguf") or {}).get("tokenizer.chat_template")
        return str(own or model.layer_text(ollama.TEMPLATE) or "")
    layer = model.manifest.first_of(artifact.CHAT_TEMPLATE)
    if layer is not None:
        with contextlib.suppress(OSError):
            return model._store.blobs.path(layer.digest).read_text(encoding="utf-8", errors="replace")
    return str((model.config.get("gguf") or {}).get("tokenizer.chat_template") or "")


def capabilities(model: LocalModel, template: str) -> list[str]:
    mode = gguf_mode(model.config)
    caps = [{"completion": "completion", "embedding": "embedding", "reranking": "reranking"}[mode]]
    if mode == "completion":
        if "tools" in template:
            caps.append("tools")
        if any(mark in template for mark in _REASONING_MARKS):
            caps.append("reasoning")
    return caps + media_capabilities(model)


_VISION, _AUDIO = "clip.has_vision_encoder", "clip.has_audio_encoder"


def media_capabilities(model: LocalModel) -> list[str]:
    """What the model's projector encodes: ["vision"], ["audio"], both or none, from its GGUF
    header (read once per blob: gguf_meta keeps it). Blocking."""
    from mr.store.gguf_meta import GGUFFormatError, read_header

    layer = model.manifest.projector
    if layer is None:
        return []
    try:
        kv = read_header(model._store.blobs.path(layer.digest)).kv
    except (GGUFFormatError, OSError):
        return ["vision"]  # loading it will tell the truth
    # projectors from before audio encoders carry neither key, and are vision encoders
    vision = kv.get(_VISION) == "true" or (_VISION not in kv and _AUDIO not in kv)
    return [name for name, on in (("vision", vision), ("audio", kv.get(_AUDIO) == "true")) if on]


def licenses(model: LocalModel) -> list[str]:
    out = []
    for path in model.license_paths:
        with contextlib.suppress(OSError):
            out.append(path.read_bytes()[:MAX_LICENSE].decode("utf-8", "replace"))
    return out


def summarize(model: LocalModel) -> JSON:
    config, kv = model.config, model.config.get("gguf") or {}
    arch = str(config.get("architecture") or kv.get("general.architecture") or "")
    template = chat_template(model)
    context = model.context_size or _int(kv.get(f"{arch}.context_length"))
    return {
        "name": model.name, "id": model.id, "tags": model.display_tags, "created": model.created_ts,
        "architecture": arch, "parameters": config.get("parameters", ""),
        "quantization": config.get("quantization", ""), "size": config.get("size", ""),
        "context_length": context, "embedding_length": _int(kv.get(f"{arch}.embedding_length")),
        "mode": gguf_mode(config), "capabilities": capabilities(model, template),
        "license_name": kv.get("general.license", ""), "licenses": licenses(model),
        "chat_template": template, "params": model.params, "system": model.system or "",
    }


def _int(value: object) -> int | None:
    try:
        return int(value) if isinstance(value, (int, float, str)) else None
    except ValueError:
        return None
