"""Push a local model: each blob the registry lacks, then the exact manifest bytes.

A push is bounded like a pull (mr.store.transfer): its guard is checked before every request
and every chunk of an upload, and an upload's bytes count towards the minimum rate. An Ollama
artifact is pushed in DMR's format: same weights, license and projector blobs, a DMR config made
from what the store knows of it, and its Jinja template when its GGUF has none. Its params and
system prompt have no place in DMR's format (its num_ctx becomes the context size).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import BinaryIO

from mr.errors import ModelLoadError
from mr.store import artifact
from mr.store import digest as digests
from mr.store import progress as progress_mod
from mr.store import reference as refs
from mr.store.errors import InvalidReferenceError
from mr.store.model import LocalModel
from mr.store.progress import EventSink, Progress
from mr.store.registry import RegistryClient
from mr.store.store import Store
from mr.store.transfer import TransferGuard, default_guard


class _UploadBody:
    """A file read in chunks for requests, with a length (so no chunked encoding) and progress.
    The guard sees it as an open transfer until its end: a cancel, the deadline or a too slow
    upload stops it at the next chunk (a socket that is being written cannot be woken)."""

    def __init__(self, path: Path, size: int, layer: str, report: Progress,
                 guard: TransferGuard | None) -> None:
        self._file: BinaryIO = path.open("rb")
        self._size = size
        self._layer = layer
        self._report = report
        self._guard = guard
        self._sent = 0
        report.reset(layer, 0)
        if guard is not None:
            guard.opened(self)

    def __len__(self) -> int:
        return self._size

    @property
    def closed(self) -> bool:
        return self._file.closed

    def read(self, n: int = -1) -> bytes:
        if self._guard is not None:
            self._guard.check()
        data = self._file.read(n if n and n > 0 else 1 << 20)
        if data:
            self._sent += len(data)
            self._report.advance(self._layer, len(data))
            if self._guard is not None:
                self._guard.advance(len(data))
        else:
            self.close()
        return data

    def close(self) -> None:
        self._file.close()
        if self._guard is not None:
            self._guard.closed(self)


def _upload(client: RegistryClient, repository: str, desc: artifact.Descriptor,
            path: Path | bytes, report: Progress) -> None:
    """Upload one blob; every body a retry left behind is closed (the guard watches open ones)."""
    bodies: list[_UploadBody] = []

    def body() -> _UploadBody | bytes:
        if isinstance(path, bytes):  # a config or template made for this push: small
            return path
        for old in bodies:
            old.close()
        bodies.append(_UploadBody(path, desc.size, desc.digest, report, client.guard))
        return bodies[-1]

    try:
        client.upload_blob(repository, desc.digest, desc.size, body=body)
    finally:
        for old in bodies:
            old.close()


def push(store: Store, reference: str, *, target: str | None = None, progress: bool = False,
         on_progress: EventSink | None = None, client: RegistryClient | None = None,
         guard: TransferGuard | None = None) -> str:
    """Push a model; without a client or a guard (the CLI's pushes) it gets the default guard."""
    model = store.resolve(reference)
    ref = _target(model, reference, target)
    data = store.manifest_bytes(model)
    if digests.of_bytes(data) != model.id:
        raise ModelLoadError(f"the stored manifest of {model.name} is corrupt")
    manifest = artifact.parse_manifest(data)
    made: dict[str, bytes] = {}
    if manifest.is_ollama:
        data, made = _dmr_form(model)
        manifest = artifact.parse_manifest(data)
    own = default_guard() if client is None and guard is None else None
    try:
        client = client or RegistryClient(ref.registry, guard=guard or own)
        report = progress_mod.make(progress, on_progress,
                                   total=sum(d.size for d in manifest.blobs), verb="Uploading")
        try:
            _upload_blobs(store, model, client, ref, manifest.blobs, report, made)
        finally:
            report.close()
        return client.put_manifest(ref, data, manifest.mediaType or artifact.OCI_MANIFEST)
    finally:
        if own is not None:
            own.close()


def _target(model: LocalModel, reference: str, target: str | None) -> refs.Reference:
    name = target or (reference if not digests.is_valid(reference.strip()) else None)
    if name is None or digests.is_short_id(name.strip()):
        if not model.tags:
            raise InvalidReferenceError("this model has no tag to push; tag it first")
        name = model.tags[0]
    ref = refs.parse(name)
    if ref.digest:
        raise InvalidReferenceError("push needs a tag, not a digest")
    return ref


def _dmr_form(model: LocalModel) -> tuple[bytes, dict[str, bytes]]:
    """DMR's manifest for an Ollama artifact, and the blobs it adds (config, template)."""
    m = model.manifest
    layers = [artifact.Descriptor(artifact.GGUF, d.digest, d.size) for d in m.weights]
    layers += [artifact.Descriptor(artifact.LICENSE, d.digest, d.size) for d in m.licenses]
    if m.projector is not None:
        layers.append(artifact.Descriptor(artifact.MMPROJ, m.projector.digest, m.projector.size))
    made: dict[str, bytes] = {}
    jinja = None
    with contextlib.suppress(ModelLoadError):  # an untranslatable template stays behind
        jinja = model.jinja_template()
    if jinja:
        text = jinja.encode()
        made[digests.of_bytes(text)] = text
        layers.append(artifact.Descriptor(artifact.CHAT_TEMPLATE, digests.of_bytes(text), len(text)))
    c = model.config
    config = artifact.ModelConfig(
        format=c.get("format") or "gguf", quantization=c.get("quantization") or None,
        parameters=c.get("parameters") or None, architecture=c.get("architecture") or None,
        size=c.get("size") or None, gguf=c.get("gguf") or None,
        context_size=model.context_size)
    created = model.created.strftime("%Y-%m-%dT%H:%M:%S.%fZ") if model.created else None
    config_bytes = artifact.build_config(config, [d.digest for d in layers], created)
    made[digests.of_bytes(config_bytes)] = config_bytes
    config_desc = artifact.Descriptor(artifact.CONFIG_DOCKER, digests.of_bytes(config_bytes),
                                      len(config_bytes))
    return artifact.build_manifest(config_desc, layers), made


def _upload_blobs(store: Store, model: LocalModel, client: RegistryClient, ref: refs.Reference,
                  blobs: list[artifact.Descriptor], report: Progress,
                  made: dict[str, bytes]) -> None:
    for desc in blobs:
        path: Path | bytes = made.get(desc.digest) or store.blobs.path(desc.digest)
        if desc.digest not in made and not store.blobs.has(desc.digest, desc.size):
            raise ModelLoadError(f"model {model.name} is incomplete in the store")
        report.start(desc.digest, desc.size)
        if not client.blob_exists(ref.repository, desc.digest):
            _upload(client, ref.repository, desc, path, report)
        report.reset(desc.digest, desc.size)
        report.done(desc.digest)
