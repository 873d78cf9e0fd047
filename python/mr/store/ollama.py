"""Ollama's artifact format (also what Hugging Face's registry endpoint serves for `hf.co/...`).

A Docker schema 2 manifest whose config is `application/vnd.docker.container.image.v1+json`
(`model_format`, `model_family`, `model_type`, `file_type`) and whose layers are one GGUF
(`application/vnd.ollama.image.model`) plus optional projector, template (a Go template), system
prompt, params (JSON defaults), licenses and messages. mr stores the manifest as pulled (the model
ID stays the registry's digest) and reads these layers in place; `mr push` writes DMR's format.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

from mr.jsontypes import JSON
from mr.store.errors import InvalidManifestError
from mr.units import human_bytes

if TYPE_CHECKING:
    from mr.store.artifact import Descriptor, Manifest

CONFIG = "application/vnd.docker.container.image.v1+json"
_PREFIX = "application/vnd.ollama.image."
MODEL = _PREFIX + "model"
PROJECTOR = _PREFIX + "projector"
ADAPTER = _PREFIX + "adapter"
TEMPLATE = _PREFIX + "template"
SYSTEM = _PREFIX + "system"
PARAMS = _PREFIX + "params"
LICENSE = _PREFIX + "license"
MESSAGES = _PREFIX + "messages"
KNOWN = (MODEL, PROJECTOR, ADAPTER, TEMPLATE, SYSTEM, PARAMS, LICENSE, MESSAGES)

# Text layers are read whole into memory (and templates into every render): keep them small.
MAX_TEMPLATE = 1 << 20
MAX_SYSTEM = 1 << 20
MAX_MESSAGES = 1 << 20
MAX_PARAMS = 64 << 10
_LIMITS = {TEMPLATE: MAX_TEMPLATE, SYSTEM: MAX_SYSTEM, MESSAGES: MAX_MESSAGES, PARAMS: MAX_PARAMS}
_SINGLE = (MODEL, PROJECTOR, TEMPLATE, SYSTEM, PARAMS, MESSAGES)


def _bad(why: str) -> InvalidManifestError:
    return InvalidManifestError(f"invalid model manifest: {why}")


def _short(text: str) -> str:
    return repr("".join(ch for ch in text if ch.isprintable())[:100])


def check_manifest(manifest: Manifest) -> None:
    """Layer rules of an Ollama-format manifest, before anything is downloaded."""
    counts: dict[str, int] = {}
    for layer in manifest.layers:
        media_type = layer.mediaType
        if media_type not in KNOWN:
            kind = "Ollama layer type" if media_type.startswith(_PREFIX) else "layer media type"
            raise _bad(f"unknown {kind} {_short(media_type)}")
        counts[media_type] = counts.get(media_type, 0) + 1
        limit = _LIMITS.get(media_type)
        if limit is not None and layer.size > limit:
            raise _bad(f"the {media_type.rsplit('.', 1)[1]} layer is {layer.size} bytes "
                       f"(at most {limit})")
    if counts.get(ADAPTER):
        raise _bad("the model has a LoRA adapter layer (application/vnd.ollama.image.adapter); "
                   "mr does not run LoRA adapters yet")
    if not counts.get(MODEL):
        raise _bad("no model layer (application/vnd.ollama.image.model): not a model, "
                   "perhaps a container image")
    for media_type in _SINGLE:
        if counts.get(media_type, 0) > 1:
            raise _bad(f"{counts[media_type]} {media_type.rsplit('.', 1)[1]} layers "
                       "(an Ollama model has one)")


# -- params -------------------------------------------------------------------------------------

class Params(msgspec.Struct, omit_defaults=True, forbid_unknown_fields=False):
    """The `.params` keys mr applies; Ollama's others (mirostat, num_gpu, ...) are ignored."""

    stop: list[str] | None = None
    temperature: float | None = None
    top_k: int | None = None
    top_p: float | None = None
    min_p: float | None = None
    repeat_penalty: float | None = None
    repeat_last_n: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    seed: int | None = None
    num_ctx: int | None = None
    num_predict: int | None = None


def parse_params(data: bytes) -> JSON:
    """The params layer as a JSON object; a refusal names what is wrong with it."""
    if len(data) > MAX_PARAMS:
        raise _bad(f"the params layer is {len(data)} bytes (at most {MAX_PARAMS})")
    try:
        raw = msgspec.json.decode(data)
    except msgspec.DecodeError as exc:
        raise _bad("the params layer is not JSON") from exc
    if not isinstance(raw, dict):
        raise _bad("the params layer is not a JSON object")
    if isinstance(raw.get("stop"), str):  # older files give one stop string
        raw["stop"] = [raw["stop"]]
    try:
        msgspec.convert(raw, Params)
    except msgspec.ValidationError as exc:
        raise _bad(f"the params layer: {str(exc)[:200]}") from exc
    return raw


def applied(params: JSON) -> Params:
    """The typed subset mr applies (the layer was validated when pulled)."""
    try:
        return msgspec.convert(params, Params)
    except msgspec.ValidationError:
        return Params()


# -- content checks, before a downloaded blob is committed --------------------------------------

def _text(path: Path, what: str) -> str:
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _bad(f"the {what} layer is not UTF-8 text") from exc


def check_blob(desc: Descriptor, path: Path) -> None:
    """What a layer's bytes must be: GGUF weights and projector, JSON params, UTF-8 text."""
    from mr.store.gguf_meta import GGUFFormatError, read_header

    media_type = desc.mediaType
    if media_type in (MODEL, PROJECTOR):
        try:
            read_header(path)
        except GGUFFormatError as exc:
            what = "model" if media_type == MODEL else "projector"
            raise _bad(f"the {what} layer is not a GGUF file ({exc})") from exc
    elif media_type == PARAMS:
        parse_params(path.read_bytes())
    elif media_type in (TEMPLATE, SYSTEM):
        _text(path, media_type.rsplit(".", 1)[1])


def blob_checker(manifest: Manifest) -> Callable[[Descriptor, Path], None] | None:
    """check_blob for an Ollama manifest, None for other formats."""
    return check_blob if manifest.config.mediaType == CONFIG else None


# -- config: Ollama's fields in DMR's shape -----------------------------------------------------

def model_config(raw: JSON, gguf: Path | None, params: JSON) -> JSON:
    """DMR's `config` object for an Ollama artifact: its config's fields, filled in from the
    GGUF header (architecture, parameters, every key) and `num_ctx` as the context size.
    Ollama's `architecture` is the CPU (amd64), not the model's: it is not used."""
    from mr.store.gguf_meta import GGUFFormatError, format_parameters, read_header

    cfg: JSON = {"format": str(raw.get("model_format") or "gguf")}
    info = None
    if gguf is not None:
        with contextlib.suppress(OSError, GGUFFormatError):
            info = read_header(gguf)
    family = raw.get("model_family")
    quant = raw.get("file_type")
    size = raw.get("model_type")
    if info is not None:
        cfg["quantization"] = info.quantization or str(quant or "")
        cfg["parameters"] = format_parameters(info.parameters) if info.parameters else str(size or "")
        cfg["architecture"] = info.architecture or str(family or "")
        cfg["size"] = human_bytes(info.size)
        cfg["gguf"] = info.kv
    else:
        cfg.update({k: str(v) for k, v in (("quantization", quant), ("parameters", size),
                                           ("architecture", family)) if v})
    num_ctx = applied(params).num_ctx
    if num_ctx is not None and num_ctx > 0:
        cfg["context_size"] = num_ctx
    return cfg
