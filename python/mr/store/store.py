"""The local store: `Store(root)` resolves, lists, tags, removes, measures, leases and commits.

Its content (blobs, manifests) and its index live here; what moves models in or out is functions
over a Store, as containerd keeps its content and image stores apart from its transfer code:
mr.store.pull.pull, mr.store.push.push, mr.store.package.package_gguf.
"""

from __future__ import annotations

import builtins
import contextlib
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from mr import config as mr_config
from mr.errors import ModelLoadError, ModelNotFoundError, MrError
from mr.jsontypes import JSON
from mr.store import artifact, leases
from mr.store import digest as digests
from mr.store import reference as refs
from mr.store.blobs import BlobStore
from mr.store.errors import ConflictError, InvalidReferenceError
from mr.store.layout import Index, IndexEntry, Layout, atomic_write
from mr.store.model import LocalModel, ensure_bundle


@dataclass
class DiskUsage:
    models: int
    models_bytes: int  # committed blobs that some model references
    unreferenced_bytes: int  # committed blobs no model references
    partial_bytes: int  # `.incomplete` downloads
    manifests_bytes: int
    quarantined: int = 0  # index entries that failed validation (kept, not used)

    @property
    def total_bytes(self) -> int:
        return (self.models_bytes + self.unreferenced_bytes + self.partial_bytes
                + self.manifests_bytes)

    @property
    def reclaimable_bytes(self) -> int:
        return self.unreferenced_bytes + self.partial_bytes

    def to_dict(self) -> dict[str, int]:
        return {"models": self.models, "models_disk_usage": self.models_bytes,
                "unreferenced_bytes": self.unreferenced_bytes, "partial_bytes": self.partial_bytes,
                "total_bytes": self.total_bytes, "reclaimable_bytes": self.reclaimable_bytes,
                "quarantined_entries": self.quarantined}


class Store:
    def __init__(self, root: Path | str | None = None) -> None:
        self.root = Path(root) if root is not None else mr_config.models_dir()
        self.layout = Layout(self.root)
        self.blobs = BlobStore(self.layout)

    # -- reading ------------------------------------------------------------------------------
    def _load(self, entry: IndexEntry) -> LocalModel | None:
        try:
            data = self.layout.manifest_path(entry.id).read_bytes()
            manifest = artifact.parse_manifest(data)
        except (OSError, MrError):
            return None  # half-deleted or foreign entry: invisible, never half-shown
        try:
            raw = self.blobs.path(manifest.config.digest).read_bytes()
            cfg, created = artifact.parse_config(raw, manifest.config.mediaType)
        except (OSError, MrError):
            cfg, created = {}, None
        model = LocalModel(id=entry.id, tags=list(entry.tags), files=list(entry.files),
                           manifest=manifest, config=cfg, created=created, _store=self)
        if manifest.is_ollama:
            self._fill_ollama(model)
        return model

    def _fill_ollama(self, model: LocalModel) -> None:
        """Ollama's config in DMR's shape (from the GGUF header); created: when it was pulled."""
        from mr.store.ollama import model_config

        weights = self.blobs.path(model.manifest.weights[0].digest)
        model.config = model_config(model.config, weights if weights.exists() else None,
                                    model.params)
        with contextlib.suppress(OSError):
            mtime = self.layout.manifest_path(model.id).stat().st_mtime
            model.created = datetime.fromtimestamp(mtime, timezone.utc)

    def list(self) -> list[LocalModel]:
        return [m for e in self.layout.read_index().entries if (m := self._load(e)) is not None]

    @staticmethod
    def check_reference(reference: str) -> None:
        """Syntax check of a local reference (ID, short ID or name) before any file call."""
        text = reference.strip() if isinstance(reference, str) else reference
        if isinstance(text, str) and text.startswith(("sha256:", "sha512:")):
            digests.validate(text)
        elif not (isinstance(text, str) and digests.is_short_id(text)):
            refs.parse(text)

    def _find(self, index: Index, reference: str) -> tuple[IndexEntry | None, str | None]:
        """(entry, the stored tag when the reference named a tag)."""
        text = reference.strip() if isinstance(reference, str) else reference
        if isinstance(text, str) and text.startswith(("sha256:", "sha512:")):
            return index.get(digests.validate(text)), None
        if isinstance(text, str) and digests.is_short_id(text):
            hits = [e for e in index.entries if digests.hex_of(e.id).startswith(text)]
            if len(hits) > 1:
                raise ConflictError(f"short ID {text} is ambiguous")
            if hits:
                return hits[0], None
        ref = refs.parse(text)
        if ref.digest:
            entry = index.get(ref.digest)
            return entry, (ref.stored if entry is not None and ref.stored in entry.tags else None)
        entry = index.by_tag(ref.stored)
        return entry, (ref.stored if entry is not None else None)

    def resolve(self, reference: str) -> LocalModel:
        """The local model named by a tag, an ID, a short ID or `name@sha256:...`."""
        entry, _ = self._find(self.layout.read_index(), reference)
        model = self._load(entry) if entry is not None else None
        if model is None:
            raise ModelNotFoundError(f"no such model: {reference}")
        return model

    def exists(self, reference: str) -> bool:
        try:
            self.resolve(reference)
        except ModelNotFoundError:
            return False
        return True

    def inspect(self, reference: str) -> JSON:
        return self.resolve(reference).to_dict()

    def manifest_bytes(self, model: LocalModel) -> bytes:
        return self.layout.manifest_path(model.id).read_bytes()

    def bundle_path(self, model: LocalModel | str) -> Path:
        """`bundles/sha256/<id>/`, created (hard links to the blobs) on first request."""
        if isinstance(model, str):
            model = self.resolve(model)
        missing = [d.digest for d in model.manifest.blobs if not self.blobs.has(d.digest, d.size)]
        if missing:
            raise ModelLoadError(f"model {model.name} is incomplete in the store; pull it again")
        return ensure_bundle(self, model)

    # -- writing ------------------------------------------------------------------------------
    def lease(self, needed: Iterable[str]) -> leases.Lease:
        """Protect blobs from GC while a pull or package is in progress."""
        self.layout.ensure()
        lease = leases.Lease(self.layout, needed)
        with self.layout.index_lock():
            lease.acquire()
        return lease

    def commit(self, model_id: str, manifest_bytes: bytes, manifest: artifact.Manifest,
               tag: str | None) -> None:
        """Write the manifest (all blobs present) and index the model with `tag` moved to it."""
        digests.validate(model_id)
        with self.layout.index_lock():
            absent = [d.digest for d in manifest.blobs if not self.blobs.has(d.digest, d.size)]
            if absent:
                raise MrError(f"blob {absent[0]} vanished from the store; try again")
            path = self.layout.manifest_path(model_id)
            if not path.exists():
                atomic_write(path, manifest_bytes)
            index = self.layout.read_index()
            index.add(model_id, [d.digest for d in manifest.blobs], tag)
            self.layout.write_index(index)

    def tag(self, source: str, target: str) -> LocalModel:
        """Point `target` at the model `source` names (moving it from any other model)."""
        self.check_reference(source)
        ref = refs.parse(target)
        if ref.digest:
            raise InvalidReferenceError(f"invalid tag {target!r}: a tag cannot pin a digest")
        if not self.layout.index_path.exists():
            raise ModelNotFoundError(f"no such model: {source}")
        with self.layout.index_lock():
            index = self.layout.read_index()
            entry, _ = self._find(index, source)
            if entry is None:
                raise ModelNotFoundError(f"no such model: {source}")
            index.add(entry.id, entry.files, ref.stored)
            self.layout.write_index(index)
        return self.resolve(entry.id)

    def remove(self, reference: str, force: bool = False) -> builtins.list[str]:
        """Untag and/or delete; returns DMR's lines (`Untagged: x`, `Deleted: sha256:...`).

        A tag: untag it; the model goes when its last tag does. An ID: delete the model, which
        needs `force` when several tags name it. Deleting removes the manifest, the bundle and
        every blob that no other model and no pull in progress needs.
        """
        self.check_reference(reference)
        if not self.layout.index_path.exists():
            raise ModelNotFoundError(f"no such model: {reference}")
        with self.layout.index_lock():
            index = self.layout.read_index()
            entry, tag = self._find(index, reference)
            if entry is None:
                raise ModelNotFoundError(f"no such model: {reference}")
            lines: list[str] = []
            if tag is not None:
                index.untag(tag)
                lines.append(f"Untagged: {refs.display(tag)}")
                if entry.tags:
                    self.layout.write_index(index)
                    return lines
            else:
                if len(entry.tags) > 1 and not force:
                    shown = ", ".join(refs.display(t) for t in entry.tags)
                    raise ConflictError(
                        f"unable to delete {digests.short_id(entry.id)} (must be forced): "
                        f"it is referenced by multiple tags: {shown}"
                    )
                lines += [f"Untagged: {refs.display(t)}" for t in entry.tags]
            index.remove(entry.id)
            self.layout.write_index(index)
            if set(entry.files) & leases.protected_digests(self.layout, leases.IN_USE):
                # A server has it loaded: it disappears from the index now, its files when the
                # server unloads it (see release_in_use).
                lines.append(f"Deleted: {entry.id} (its files stay until a server unloads it)")
                return lines
            self._delete_files(entry, index)
            lines.append(f"Deleted: {entry.id}")
            return lines

    def hold_in_use(self, model_id: str, files: Sequence[str]) -> leases.Lease:
        """A server's hold on a loaded model: `rm` keeps its files until `release_in_use`."""
        self.layout.ensure()
        lease = leases.Lease(self.layout, files, kind=leases.IN_USE)
        with self.layout.index_lock():
            lease.acquire()
        return lease

    def release_in_use(self, lease: leases.Lease, model_id: str) -> None:
        """Drop the hold; a model removed meanwhile now loses its files."""
        with self.layout.index_lock():
            lease.release()
            index = self.layout.read_index()
            if index.get(model_id) is not None or not self.layout.manifest_path(model_id).exists():
                return
            entry = IndexEntry(id=model_id, files=list(lease.digests))
            if not set(entry.files) & leases.protected_digests(self.layout, leases.IN_USE):
                self._delete_files(entry, index)

    def _delete_files(self, entry: IndexEntry, index: Index) -> None:
        """Under the index lock: bundle, manifest, then blobs nobody else needs. Blob lock
        files stay: a packager or a pull may hold one (unlinking it would let a second
        process lock a new file and write the same blob at once)."""
        bundle = self.layout.bundle_dir(entry.id)
        if bundle.exists():
            shutil.rmtree(bundle, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            self.layout.manifest_path(entry.id).unlink()
        with contextlib.suppress(FileNotFoundError):
            (self.layout.locks_dir / f"bundle-{digests.hex_of(entry.id)}.lock").unlink()
        keep = index.referenced() | leases.protected_digests(self.layout)
        for d in entry.files:
            if d not in keep:  # no model and no pull in progress (it would hold a lease) needs it
                self.blobs.remove(d)

    def df(self) -> DiskUsage:
        index = self.layout.read_index()
        referenced = index.referenced()
        used = unreferenced = partial = manifests = 0
        for algorithm_dir in _dirs(self.layout.blobs_dir):
            for path in algorithm_dir.iterdir():
                if not path.is_file():
                    continue
                size = path.stat().st_size
                if path.name.endswith(".incomplete"):
                    partial += size
                elif digests.is_valid(f"{algorithm_dir.name}:{path.name}"):
                    if f"{algorithm_dir.name}:{path.name}" in referenced:
                        used += size
                    else:
                        unreferenced += size
        for algorithm_dir in _dirs(self.layout.manifests_dir):
            manifests += sum(p.stat().st_size for p in algorithm_dir.iterdir() if p.is_file())
        return DiskUsage(models=len(index.entries), models_bytes=used,
                         unreferenced_bytes=unreferenced, partial_bytes=partial,
                         manifests_bytes=manifests, quarantined=len(index.quarantined))


def _dirs(parent: Path) -> list[Path]:
    if not parent.is_dir():
        return []
    return [d for d in parent.iterdir() if d.is_dir() and d.name in ("sha256", "sha512")]
