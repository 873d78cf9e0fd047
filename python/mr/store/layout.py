"""The store on disk in Docker Model Runner's layout, and its index under a cross-process lock.

    <root>/layout.json             {"version": "1.0.0"}
    <root>/models.json             {"models": [{"id", "tags", "files"}]}
    <root>/blobs/sha256/<hex>      layers and configs ("<hex>.incomplete" while downloading)
    <root>/manifests/sha256/<hex>  raw manifest bytes
    <root>/bundles/sha256/<hex>/   config.json + model/model.gguf (hard links), made on first load
    <root>/.locks/                 mr's lock and lease files (DMR ignores them)

Every path built from a digest passes the digest validator first. Every write is atomic (temp file
in the same directory, fsync, rename). Every read-modify-write of models.json holds `index.lock`.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import tempfile
from pathlib import Path

import msgspec
from filelock import FileLock

from mr.jsontypes import JSON
from mr.store import digest as digests
from mr.store.errors import DiskFullError, StoreCorruptError
from mr.units import human_bytes

log = logging.getLogger("mr.store")
LAYOUT_VERSION = "1.0.0"
LOCK_TIMEOUT_S = 120.0


class IndexEntry(msgspec.Struct):
    id: str
    tags: list[str] = msgspec.field(default_factory=list)
    files: list[str] = msgspec.field(default_factory=list)
    extra: JSON = msgspec.field(default_factory=dict)  # fields other tools wrote

    def to_json(self) -> JSON:
        return {**self.extra, "id": self.id, "tags": list(self.tags), "files": list(self.files)}


def _entry(raw: object) -> IndexEntry | None:
    """An index entry, or None when it could name a path outside the store (tampered)."""
    if not isinstance(raw, dict):
        return None
    model_id, tags, files = raw.get("id"), raw.get("tags") or [], raw.get("files") or []
    if not digests.is_valid(model_id) or not isinstance(tags, list) or not isinstance(files, list):
        return None
    if not all(isinstance(t, str) for t in tags) or not all(digests.is_valid(f) for f in files):
        return None
    extra = {k: v for k, v in raw.items() if k not in ("id", "tags", "files")}
    return IndexEntry(id=model_id, tags=list(tags), files=list(files), extra=extra)


class Index:
    """The models.json contents; a tag belongs to one model only."""

    def __init__(self, entries: list[IndexEntry] | None = None,
                 extra: JSON | None = None, quarantined: list[object] | None = None) -> None:
        self.entries: list[IndexEntry] = entries or []
        self.extra: JSON = extra or {}  # top-level keys other tools wrote
        # Entries that failed validation: never used, never dropped (kept under "quarantined"
        # in models.json), and their blobs are never collected.
        self.quarantined: list[object] = quarantined or []

    def get(self, model_id: str) -> IndexEntry | None:
        return next((e for e in self.entries if e.id == model_id), None)

    def by_tag(self, tag: str) -> IndexEntry | None:
        return next((e for e in self.entries if tag in e.tags), None)

    def untag(self, tag: str) -> IndexEntry | None:
        """Remove `tag` from whichever model holds it; return that model."""
        owner = self.by_tag(tag)
        if owner is not None:
            owner.tags = [t for t in owner.tags if t != tag]
        return owner

    def add(self, model_id: str, files: list[str], tag: str | None = None) -> IndexEntry:
        """Add (or update) a model and move `tag` onto it."""
        entry = self.get(model_id)
        if entry is None:
            entry = IndexEntry(id=model_id, tags=[], files=list(files))
            self.entries.append(entry)
        else:
            entry.files = list(files)
        if tag is not None:
            self.untag(tag)
            entry.tags.append(tag)
        return entry

    def remove(self, model_id: str) -> IndexEntry | None:
        entry = self.get(model_id)
        if entry is not None:
            self.entries.remove(entry)
        return entry

    def referenced(self) -> set[str]:
        return {f for e in self.entries for f in e.files} | _digests_in(self.quarantined)


def _digests_in(value: object) -> set[str]:
    """Every valid digest string anywhere inside `value` (a quarantined entry's blobs)."""
    if isinstance(value, str):
        return {value} if digests.is_valid(value) else set()
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list):
        return set().union(*(_digests_in(v) for v in value)) if value else set()
    return set()


def fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def raise_if_disk_full(exc: OSError, path: Path, needed: int) -> None:
    """Turn ENOSPC/EDQUOT into DiskFullError with the sizes."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        free = free_bytes(path)
        # The write ran out of space; by now the partial file may be gone, so the free space can
        # look like enough: say when it was counted.
        raise DiskFullError(
            f"no space left on device: need {human_bytes(needed)}, free {human_bytes(free)} "
            "(the disk filled up while writing; free space counted after the failed write was cleaned up)"
        ) from exc


def free_bytes(path: Path) -> int:
    import shutil

    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return shutil.disk_usage(probe).free


def atomic_write(path: Path, data: bytes, mode: int = 0o644, durable: bool = True) -> None:
    """Write `data` to `path` so readers see the old file or the new one, never half; synced
    to disk unless not `durable` (a file that means nothing after a crash)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise_if_disk_full(exc, path.parent, len(data))
        raise
    if durable:
        fsync_dir(path.parent)


class Layout:
    """Paths of one store root; the only place that turns digests into paths."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.blobs_dir = self.root / "blobs"
        self.manifests_dir = self.root / "manifests"
        self.bundles_dir = self.root / "bundles"
        self.locks_dir = self.root / ".locks"
        self.index_path = self.root / "models.json"
        self.layout_path = self.root / "layout.json"

    # -- setup ------------------------------------------------------------------------------
    def ensure(self) -> None:
        """Create the directories and layout.json; refuse a store of an unknown major version."""
        for d in (self.root, self.blobs_dir / "sha256", self.manifests_dir / "sha256",
                  self.bundles_dir / "sha256", self.locks_dir / "blobs", self.locks_dir / "leases"):
            d.mkdir(parents=True, exist_ok=True)
        if self.layout_path.exists():
            try:
                version = str(json.loads(self.layout_path.read_bytes()).get("version", ""))
            except (ValueError, AttributeError) as exc:
                raise StoreCorruptError("the store's layout.json is not valid JSON") from exc
            if version.split(".")[0] != LAYOUT_VERSION.split(".")[0]:
                raise StoreCorruptError(f"unsupported store layout version {version!r}")
        else:
            atomic_write(self.layout_path, json.dumps({"version": LAYOUT_VERSION}).encode())

    # -- digest paths -----------------------------------------------------------------------
    def blob_path(self, digest: str) -> Path:
        algorithm, hexpart = digests.split(digest)
        return self.blobs_dir / algorithm / hexpart

    def partial_path(self, digest: str) -> Path:
        algorithm, hexpart = digests.split(digest)
        return self.blobs_dir / algorithm / f"{hexpart}.incomplete"

    def manifest_path(self, model_id: str) -> Path:
        algorithm, hexpart = digests.split(model_id)
        return self.manifests_dir / algorithm / hexpart

    def bundle_dir(self, model_id: str) -> Path:
        algorithm, hexpart = digests.split(model_id)
        return self.bundles_dir / algorithm / hexpart

    def blob_lock_path(self, digest: str) -> Path:
        algorithm, hexpart = digests.split(digest)
        return self.locks_dir / "blobs" / f"{algorithm}-{hexpart}.lock"

    # -- index ------------------------------------------------------------------------------
    def index_lock(self) -> FileLock:
        self.locks_dir.mkdir(parents=True, exist_ok=True)
        return FileLock(str(self.locks_dir / "index.lock"), timeout=LOCK_TIMEOUT_S)

    def read_index(self) -> Index:
        """Read models.json (no lock needed: writes are atomic). Bad entries are skipped."""
        try:
            data = self.index_path.read_bytes()
        except FileNotFoundError:
            return Index()
        try:
            raw = json.loads(data)
        except ValueError as exc:
            raise StoreCorruptError("the store's models.json is not valid JSON") from exc
        if not isinstance(raw, dict) or not isinstance(raw.get("models") or [], list):
            raise StoreCorruptError("the store's models.json is not a model index")
        entries, bad = [], []
        for item in raw.get("models") or []:
            entry = _entry(item)
            if entry is None:
                bad.append(item)
            else:
                entries.append(entry)
        if bad:
            log.warning("models.json: %d entr%s failed validation (a path outside the store, a bad "
                        "digest); quarantined: kept under \"quarantined\", not used, blobs kept",
                        len(bad), "y" if len(bad) == 1 else "ies")
        earlier = raw.get("quarantined")
        quarantined = [*(earlier if isinstance(earlier, list) else []), *bad]
        extra = {k: v for k, v in raw.items() if k not in ("models", "quarantined")}
        return Index(entries, extra, quarantined)

    def write_index(self, index: Index) -> None:
        payload = {**index.extra, "models": [e.to_json() for e in index.entries]}
        if index.quarantined:
            payload["quarantined"] = index.quarantined
        atomic_write(self.index_path, json.dumps(payload, indent=2).encode() + b"\n")
