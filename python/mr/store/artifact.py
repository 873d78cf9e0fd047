"""The OCI artifact: media types, manifest and config wire types, building and strict parsing.

Docker Model Runner's format (COMPAT.md), CNCF ModelPack GGUF artifacts and Ollama's format
(mr.store.ollama) are read; mr writes DMR's format. Annotations such as
`org.opencontainers.image.title` are kept as data and never used as paths.
"""

from __future__ import annotations

from datetime import datetime, timezone

import msgspec

from mr.jsontypes import JSON
from mr.store import digest as digests
from mr.store import ollama
from mr.store.errors import InvalidManifestError

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_MANIFEST_V2 = "application/vnd.docker.distribution.manifest.v2+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST_V2)

CONFIG_DOCKER = "application/vnd.docker.ai.model.config.v0.1+json"
GGUF = "application/vnd.docker.ai.gguf.v3"
LICENSE = "application/vnd.docker.ai.license"
MMPROJ = "application/vnd.docker.ai.mmproj"
CHAT_TEMPLATE = "application/vnd.docker.ai.chat.template.jinja"

CNCF_ARTIFACT = "application/vnd.cncf.model.manifest.v1+json"
CONFIG_CNCF = "application/vnd.cncf.model.config.v1+json"
CNCF_GGUF = "application/vnd.cncf.model.weight.v1.gguf"

CONFIG_TYPES = (CONFIG_DOCKER, CONFIG_CNCF, ollama.CONFIG)
WEIGHT_TYPES = (GGUF, CNCF_GGUF, ollama.MODEL)
PROJECTOR_TYPES = (MMPROJ, ollama.PROJECTOR)
LICENSE_TYPES = (LICENSE, ollama.LICENSE)
TITLE = "org.opencontainers.image.title"

MAX_MANIFEST_BYTES = 4 << 20
MAX_CONFIG_BYTES = 8 << 20
MAX_LAYERS = 512
MAX_BLOB_SIZE = 1 << 44  # 16 TiB


class Descriptor(msgspec.Struct, omit_defaults=True):
    mediaType: str
    digest: str
    size: int
    annotations: dict[str, str] | None = None


class Manifest(msgspec.Struct, omit_defaults=True):
    schemaVersion: int
    config: Descriptor
    layers: list[Descriptor]
    mediaType: str | None = None
    artifactType: str | None = None
    annotations: dict[str, str] | None = None

    @property
    def weights(self) -> list[Descriptor]:
        return [layer for layer in self.layers if layer.mediaType in WEIGHT_TYPES]

    def first_of(self, media_type: str) -> Descriptor | None:
        return next((layer for layer in self.layers if layer.mediaType == media_type), None)

    def all_of(self, media_type: str) -> list[Descriptor]:
        return [layer for layer in self.layers if layer.mediaType == media_type]

    @property
    def blobs(self) -> list[Descriptor]:
        """Config and layers, each digest once, config last (DMR's `files` order)."""
        seen: set[str] = set()
        out = []
        for d in [*self.layers, self.config]:
            if d.digest not in seen:
                seen.add(d.digest)
                out.append(d)
        return out

    @property
    def is_ollama(self) -> bool:
        return self.config.mediaType == ollama.CONFIG

    @property
    def projector(self) -> Descriptor | None:
        return next((layer for layer in self.layers if layer.mediaType in PROJECTOR_TYPES), None)

    @property
    def licenses(self) -> list[Descriptor]:
        return [layer for layer in self.layers if layer.mediaType in LICENSE_TYPES]


class ModelConfig(msgspec.Struct, omit_defaults=True):
    format: str | None = None
    quantization: str | None = None
    parameters: str | None = None
    architecture: str | None = None
    size: str | None = None
    gguf: dict[str, str] | None = None
    context_size: int | None = None


class ConfigDescriptor(msgspec.Struct, omit_defaults=True):
    created: str | None = None


class RootFS(msgspec.Struct):
    type: str
    diff_ids: list[str]


class ConfigFile(msgspec.Struct, omit_defaults=True):
    config: ModelConfig
    descriptor: ConfigDescriptor
    rootfs: RootFS


def _bad(why: str) -> InvalidManifestError:
    return InvalidManifestError(f"invalid model manifest: {why}")


def _check_descriptor(d: Descriptor, what: str) -> None:
    if not digests.is_valid(d.digest):
        raise _bad(f"{what} has an invalid digest")
    if d.size < 0 or d.size > MAX_BLOB_SIZE:
        raise _bad(f"{what} has an impossible size {d.size}")


def parse_manifest(data: bytes, content_type: str | None = None) -> Manifest:
    """Decode and validate a manifest; every refusal is an InvalidManifestError."""
    if len(data) > MAX_MANIFEST_BYTES:
        raise _bad("larger than 4 MiB")
    declared = (content_type or "").split(";")[0].strip()
    if declared in (OCI_INDEX, DOCKER_MANIFEST_LIST):
        raise _bad("an image index (multi-platform) is not a model artifact")
    try:
        raw = msgspec.json.decode(data)
        if isinstance(raw, dict) and raw.get("mediaType") in (OCI_INDEX, DOCKER_MANIFEST_LIST):
            raise _bad("an image index (multi-platform) is not a model artifact")
        manifest = msgspec.convert(raw, Manifest)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise _bad(str(exc)[:200]) from exc
    if manifest.schemaVersion != 2:
        raise _bad(f"schemaVersion {manifest.schemaVersion}")
    media_type = manifest.mediaType or declared or OCI_MANIFEST
    if media_type not in MANIFEST_TYPES:
        raise _bad(f"unsupported media type {media_type[:100]!r}")
    if manifest.mediaType and declared in MANIFEST_TYPES and declared != manifest.mediaType:
        raise _bad("media type differs from the one the registry declared")
    if manifest.config.mediaType not in CONFIG_TYPES:
        raise _bad(f"not a model (config media type {manifest.config.mediaType[:100]!r})")
    _check_descriptor(manifest.config, "config")
    if manifest.config.size > MAX_CONFIG_BYTES:
        raise _bad("config larger than 8 MiB")
    if not manifest.layers:
        raise _bad("no layers")
    if len(manifest.layers) > MAX_LAYERS:
        raise _bad(f"{len(manifest.layers)} layers")
    for i, layer in enumerate(manifest.layers):
        _check_descriptor(layer, f"layer {i}")
    if manifest.is_ollama:
        ollama.check_manifest(manifest)
        return manifest
    kinds = {layer.mediaType for layer in manifest.weights}
    if not kinds:
        raise _bad("no GGUF weights layer (mr runs GGUF models)")
    if len(kinds) > 1 or ollama.MODEL in kinds:
        raise _bad("ambiguous weights (GGUF layers of several formats)")
    return manifest


def encode(obj: msgspec.Struct) -> bytes:
    return msgspec.json.encode(obj)


def rfc3339_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str | None) -> datetime | None:
    """RFC 3339 with up to nanoseconds (Go writes 9 digits), `Z` or an offset."""
    if not text:
        return None
    import re

    m = re.fullmatch(
        r"(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2})(?:\.(\d+))?([Zz]|[+-]\d{2}:?\d{2})?",
        text.strip(),
    )
    if not m:
        return None
    frac = (m[3] or "0")[:6].ljust(6, "0")
    tz = m[4] or "Z"
    tz = "+00:00" if tz in ("Z", "z") else (tz if ":" in tz else f"{tz[:3]}:{tz[3:]}")
    try:
        return datetime.fromisoformat(f"{m[1]}T{m[2]}.{frac}{tz}")
    except ValueError:
        return None


def build_config(model: ModelConfig, diff_ids: list[str], created: str | None = None) -> bytes:
    config = ConfigFile(
        config=model,
        descriptor=ConfigDescriptor(created=created or rfc3339_now()),
        rootfs=RootFS(type="rootfs", diff_ids=diff_ids),
    )
    return encode(config)


def build_manifest(config: Descriptor, layers: list[Descriptor]) -> bytes:
    return encode(Manifest(schemaVersion=2, mediaType=OCI_MANIFEST, config=config, layers=layers))


def parse_config(data: bytes, media_type: str) -> tuple[JSON, datetime | None]:
    """(the `config` object in DMR's shape, created time) from a Docker or CNCF config blob."""
    try:
        raw = msgspec.json.decode(data)
    except msgspec.DecodeError as exc:
        raise InvalidManifestError("invalid model config: not JSON") from exc
    if not isinstance(raw, dict):
        raise InvalidManifestError("invalid model config: not an object")
    if media_type == CONFIG_CNCF:
        return _from_cncf(raw)
    if media_type == ollama.CONFIG:
        return raw, None  # mr.store.ollama.model_config fills it in from the GGUF
    cfg = raw.get("config")
    cfg = dict(cfg) if isinstance(cfg, dict) else {}
    descriptor = raw.get("descriptor")
    created = descriptor.get("created") if isinstance(descriptor, dict) else None
    return cfg, parse_time(created if isinstance(created, str) else None)


def _from_cncf(raw: JSON) -> tuple[JSON, datetime | None]:
    src, desc = raw.get("config"), raw.get("descriptor")
    src = src if isinstance(src, dict) else {}
    desc = desc if isinstance(desc, dict) else {}
    cfg: JSON = {"format": str(src.get("format") or "gguf")}
    for ours, theirs in (("architecture", "architecture"), ("parameters", "paramSize"),
                         ("quantization", "quantization")):
        if src.get(theirs):
            cfg[ours] = str(src[theirs])
    created = desc.get("createdAt")
    return cfg, parse_time(created if isinstance(created, str) else None)
