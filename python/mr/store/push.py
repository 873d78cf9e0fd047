"""Push a local model: each blob the registry lacks, then the exact manifest bytes."""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

from mr.errors import ModelLoadError
from mr.store import artifact
from mr.store import digest as digests
from mr.store import progress as progress_mod
from mr.store import reference as refs
from mr.store.errors import InvalidReferenceError
from mr.store.progress import EventSink, Progress
from mr.store.registry import RegistryClient
from mr.store.store import Store


class _UploadBody:
    """A file read in chunks for requests, with a length (so no chunked encoding) and progress."""

    def __init__(self, path: Path, size: int, layer: str, report: Progress) -> None:
        self._file: BinaryIO = path.open("rb")
        self._size = size
        self._layer = layer
        self._report = report
        self._sent = 0
        report.reset(layer, 0)

    def __len__(self) -> int:
        return self._size

    def read(self, n: int = -1) -> bytes:
        data = self._file.read(n if n and n > 0 else 1 << 20)
        if data:
            self._sent += len(data)
            self._report.advance(self._layer, len(data))
        else:
            self._file.close()
        return data


def push(store: Store, reference: str, *, target: str | None = None, progress: bool = False,
         on_progress: EventSink | None = None, client: RegistryClient | None = None) -> str:
    model = store.resolve(reference)
    name = target or (reference if not digests.is_valid(reference.strip()) else None)
    if name is None or digests.is_short_id(name.strip()):
        if not model.tags:
            raise InvalidReferenceError("this model has no tag to push; tag it first")
        name = model.tags[0]
    ref = refs.parse(name)
    if ref.digest:
        raise InvalidReferenceError("push needs a tag, not a digest")
    data = store.manifest_bytes(model)
    if digests.of_bytes(data) != model.id:
        raise ModelLoadError(f"the stored manifest of {model.name} is corrupt")
    manifest = artifact.parse_manifest(data)
    client = client or RegistryClient(ref.registry)
    blobs = manifest.blobs
    report = progress_mod.make(progress, on_progress, total=sum(d.size for d in blobs),
                               verb="Uploading")
    try:
        for desc in blobs:
            path = store.blobs.path(desc.digest)
            if not store.blobs.has(desc.digest, desc.size):
                raise ModelLoadError(f"model {model.name} is incomplete in the store")
            report.start(desc.digest, desc.size)
            if not client.blob_exists(ref.repository, desc.digest):
                client.upload_blob(
                    ref.repository, desc.digest, desc.size,
                    body=lambda p=path, d=desc: _UploadBody(p, d.size, d.digest, report),
                )
            report.reset(desc.digest, desc.size)
            report.done(desc.digest)
        return client.put_manifest(ref, data, manifest.mediaType or artifact.OCI_MANIFEST)
    finally:
        report.close()
