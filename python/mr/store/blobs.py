"""Content-addressed blobs: written to a temp file while hashing, verified, renamed atomically.

A blob's final name is its digest and exists only after its size and then its digest were
checked; committed blobs are read-only. Downloads go to `<hex>.incomplete`, which a later pull
resumes (re-hashing what is there) but never trusts.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from filelock import FileLock

from mr.store import digest as digests
from mr.store.errors import DigestMismatchError
from mr.store.layout import Layout, fsync_dir, raise_if_disk_full

CHUNK = 1 << 20
READ_ONLY = 0o444


def _write(f: BinaryIO, data: bytes) -> None:
    """The one place blob bytes hit the disk (tests inject ENOSPC here)."""
    f.write(data)


def _mismatch(want: str, got: str, want_size: int, got_size: int, more: bool = False) -> str:
    text = f"digest mismatch: want {want} got {got}"
    if more:
        return f"{text} (body longer than the {want_size} bytes expected)"
    if got_size != want_size:
        return f"{text} (size want {want_size} bytes, got {got_size})"
    return text


class PartialBlob:
    """A download in `<hex>.incomplete`: resume from what is there, commit only when verified."""

    def __init__(self, layout: Layout, digest: str, size: int) -> None:
        self.digest = digests.validate(digest)
        self.size = size
        self.path = layout.partial_path(digest)
        self.final = layout.blob_path(digest)
        self._file: BinaryIO | None = None
        self._hasher = digests.hasher(digest)
        self.offset = 0
        self.overflow = False

    def open(self) -> int:
        """Open for writing; keep (and re-hash) an existing partial no longer than the blob."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._hasher = digests.hasher(self.digest)
        self.offset = 0
        self.overflow = False
        try:
            existing = self.path.stat().st_size
        except FileNotFoundError:
            existing = -1
        if 0 < existing <= self.size:
            f = self.path.open("r+b")
            while chunk := f.read(CHUNK):
                self._hasher.update(chunk)
                self.offset += len(chunk)
            self._file = f
        else:
            self._file = self.path.open("w+b")
        return self.offset

    def restart(self) -> None:
        """Start over from byte 0 (the registry ignored our Range, or the partial was bad)."""
        assert self._file is not None
        self._file.seek(0)
        self._file.truncate(0)
        self._hasher = digests.hasher(self.digest)
        self.offset = 0
        self.overflow = False

    def write(self, data: bytes) -> None:
        """Append; bytes past the expected size are hashed (for the error) but not written."""
        assert self._file is not None
        self._hasher.update(data)
        room = self.size - self.offset
        if len(data) > room:
            self.overflow = True
            data = data[: max(room, 0)]
        if not data:
            return
        try:
            _write(self._file, data)
        except OSError as exc:
            self.discard()
            raise_if_disk_full(exc, self.path.parent, self.size)
            raise
        self.offset += len(data)

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()
            os.fsync(self._file.fileno())

    def close(self) -> None:
        """Keep the partial on disk for a later resume."""
        if self._file is not None:
            with contextlib.suppress(OSError):
                self.flush()
            self._file.close()
            self._file = None

    def discard(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None
        with contextlib.suppress(OSError):
            self.path.unlink()

    def commit(self, validate: Callable[[Path], None] | None = None) -> Path:
        """Verify size, then digest, then `validate` (what the bytes must be: a GGUF, JSON...);
        rename into place read-only. On any refusal nothing remains."""
        self.flush()
        got = digests.from_hasher(self._hasher)
        if self.overflow or self.offset != self.size or got != self.digest:
            self.discard()
            raise DigestMismatchError(
                _mismatch(self.digest, got, self.size, self.offset, more=self.overflow)
            )
        assert self._file is not None
        self._file.close()
        self._file = None
        if validate is not None:
            try:
                validate(self.path)
            except BaseException:
                self.discard()
                raise
        os.chmod(self.path, READ_ONLY)
        os.replace(self.path, self.final)
        fsync_dir(self.final.parent)
        return self.final


class BlobStore:
    def __init__(self, layout: Layout) -> None:
        self.layout = layout

    def path(self, digest: str) -> Path:
        return self.layout.blob_path(digest)

    def has(self, digest: str, size: int | None = None) -> bool:
        """A committed blob exists (and has the expected size, when given)."""
        try:
            st = self.path(digest).stat()
        except FileNotFoundError:
            return False
        return size is None or st.st_size == size

    def partial_size(self, digest: str) -> int:
        try:
            return self.layout.partial_path(digest).stat().st_size
        except FileNotFoundError:
            return 0

    def lock(self, digest: str) -> FileLock:
        """Held while downloading or importing one blob: each blob is fetched once."""
        path = self.layout.blob_lock_path(digest)
        path.parent.mkdir(parents=True, exist_ok=True)
        return FileLock(str(path), timeout=-1)

    def partial(self, digest: str, size: int) -> PartialBlob:
        return PartialBlob(self.layout, digest, size)

    def remove(self, digest: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path(digest).unlink()

    def _commit_temp(self, tmp: Path, digest: str) -> None:
        final = self.path(digest)
        if final.exists():
            tmp.unlink()
            return
        os.chmod(tmp, READ_ONLY)
        os.replace(tmp, final)
        fsync_dir(final.parent)

    def put_bytes(self, data: bytes) -> str:
        """Store small content (configs, templates); returns its sha256 digest."""
        digest = digests.of_bytes(data)
        if self.has(digest, len(data)):
            return digest
        tmp = self._temp()
        try:
            with tmp.open("wb") as f:
                _write(f, data)
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise_if_disk_full(exc, tmp.parent, len(data))
            raise
        self._commit_temp(tmp, digest)
        return digest

    def import_file(
        self, src: Path, on_bytes: Callable[[int], None] | None = None,
        before_commit: Callable[[str], None] | None = None,
    ) -> tuple[str, int]:
        """Copy a local file in while hashing it; returns (digest, size). `before_commit(digest)`
        runs once the digest is known, before the blob is in place (a packager's lease)."""
        total = src.stat().st_size
        tmp = self._temp()
        hasher = hashlib.sha256()
        size = 0
        try:
            with src.open("rb") as fin, tmp.open("wb") as fout:
                while chunk := fin.read(CHUNK):
                    hasher.update(chunk)
                    _write(fout, chunk)
                    size += len(chunk)
                    if on_bytes:
                        on_bytes(len(chunk))
                fout.flush()
                os.fsync(fout.fileno())
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise_if_disk_full(exc, tmp.parent, total)
            raise
        digest = digests.from_hasher(hasher)
        try:
            if before_commit is not None:
                before_commit(digest)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        with self.lock(digest):
            self._commit_temp(tmp, digest)
        return digest, size

    def _temp(self) -> Path:
        directory = self.layout.blobs_dir / "sha256"
        directory.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=directory, prefix=".import-", suffix=".tmp")
        os.close(fd)
        return Path(name)

    def verify(self, digest: str) -> bool:
        """Re-hash a committed blob (slow; for `inspect --verify` style checks)."""
        h = digests.hasher(digest)
        with self.path(digest).open("rb") as f:
            while chunk := f.read(CHUNK):
                h.update(chunk)
        return digests.from_hasher(h) == digest
