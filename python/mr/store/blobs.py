"""Content-addressed blobs: written to a temp file while hashing, verified, renamed atomically.

A blob's final name is its digest and exists only after its size and then its digest were
checked; committed blobs are read-only. Downloads go to `<hex>.incomplete`, which a later pull
resumes (re-hashing what is there) but never trusts. A download is hashed, written and synced on
threads of their own (`_Workers`), so that the socket reads go on meanwhile.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import queue
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, Generic, TypeVar

from filelock import FileLock

from mr.store import digest as digests
from mr.store.errors import DigestMismatchError
from mr.store.layout import Layout, fsync_dir, raise_if_disk_full

CHUNK = 1 << 20
READ_ONLY = 0o444
PIPE_CHUNKS = 8  # downloaded chunks waiting for each worker thread: a bound on the memory held
# During a download the disk is synced every so many bytes, on a thread of its own, so that the
# fsync before the commit has little left to write (it would otherwise flush the whole blob
# after the transfer), and no write waits for it.
EARLY_SYNC = 16 << 20
# A blob this small (a config, a template, params) is hashed and written on the caller's thread:
# starting the worker threads would cost more than they save.
INLINE = 1 << 20
T = TypeVar("T")
_datasync = getattr(os, "fdatasync", os.fsync)  # macOS has no fdatasync
_fullsync = os.fsync  # the commit's: tests hold it to see what overlaps it


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


class _Pipe(Generic[T]):
    """Runs `consume` on each item put, in order, on a thread of its own. The first exception
    stops the work (later items are dropped); the owner finds it in `error`."""

    def __init__(self, consume: Callable[[T], None], name: str, bound: int = PIPE_CHUNKS) -> None:
        self._consume = consume
        self.error: BaseException | None = None
        self._queue: queue.Queue[tuple[T] | None] = queue.Queue(bound)
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def put(self, item: T) -> None:
        self._queue.put((item,))

    def offer(self, item: T) -> None:
        """Put unless the queue is full: an item already waiting does the same work."""
        with contextlib.suppress(queue.Full):
            self._queue.put_nowait((item,))

    def drain(self) -> None:
        """Wait until every item put so far is consumed (or dropped after an error)."""
        self._queue.join()

    def stop(self) -> BaseException | None:
        self._queue.put(None)
        self._thread.join()
        return self.error

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                if self.error is None:
                    self._consume(item[0])
            except BaseException as exc:  # the owner re-raises it on its own thread
                self.error = exc
            finally:
                self._queue.task_done()


class _Workers:
    """The threads of one download. sha256, write(2) and fdatasync each release the GIL, so on
    threads of their own they overlap each other and the socket reads: the hashing (the most
    work, about 1.5 GB/s on one core with SHA extensions) no longer waits for the writes, and
    the writes never wait for the disk. The writer asks for an fdatasync every EARLY_SYNC
    bytes without waiting for it, so that the commit's sync finds little left to write."""

    def __init__(self, file: BinaryIO, hasher: Callable[[], digests.Hasher]) -> None:
        fd = file.fileno()
        unsynced = 0

        def store(data: bytes) -> None:
            nonlocal unsynced
            _write(file, data)
            unsynced += len(data)
            if unsynced >= EARLY_SYNC:
                file.flush()
                self.sync.offer(False)
                unsynced = 0

        def sync(full: bool) -> None:
            (_fullsync if full else _datasync)(fd)

        self.sync: _Pipe[bool] = _Pipe(sync, "mr-blob-sync", bound=1)
        self.hash: _Pipe[bytes] = _Pipe(lambda data: hasher().update(data), "mr-blob-hash")
        self.disk: _Pipe[bytes] = _Pipe(store, "mr-blob-disk")

    @property
    def error(self) -> BaseException | None:
        return self.disk.error or self.hash.error or self.sync.error

    def drain(self) -> None:
        for pipe in (self.hash, self.disk, self.sync):
            pipe.drain()

    def stop(self) -> BaseException | None:
        for pipe in (self.hash, self.disk, self.sync):
            pipe.stop()
        return self.error


class PartialBlob:
    """A download in `<hex>.incomplete`: resume from what is there, commit only when verified.

    `write` hands the bytes to the hashing and disk threads (`_Workers`; a blob of INLINE bytes
    or less is hashed and written at once instead); `offset` counts the bytes accepted.
    Anything that reads the file or the hash (flush, restart, commit) first waits for those
    threads, and a write they failed is raised there, as a write on the caller's thread would
    have been."""

    def __init__(self, layout: Layout, digest: str, size: int) -> None:
        self.digest = digests.validate(digest)
        self.size = size
        self.path = layout.partial_path(digest)
        self.final = layout.blob_path(digest)
        self._file: BinaryIO | None = None
        self._hasher = digests.hasher(digest)
        self._workers: _Workers | None = None
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
        self._settle()
        assert self._file is not None
        self._file.seek(0)
        self._file.truncate(0)
        self._hasher = digests.hasher(self.digest)
        self.offset = 0
        self.overflow = False

    def write(self, data: bytes) -> None:
        """Append; bytes past the expected size are hashed (for the error) but not written."""
        assert self._file is not None
        self._raise_failed()
        keep = min(len(data), max(self.size - self.offset, 0))
        self.overflow = self.overflow or keep < len(data)
        kept = data if keep == len(data) else data[:keep]
        if self.size <= INLINE:
            self._hasher.update(data)
            if keep:
                self._write_now(kept)
        else:
            if self._workers is None:
                self._workers = _Workers(self._file, lambda: self._hasher)
            self._workers.hash.put(data)
            if keep:
                self._workers.disk.put(kept)
        self.offset += keep

    def _write_now(self, data: bytes) -> None:
        assert self._file is not None
        try:
            _write(self._file, data)
        except OSError as exc:
            self.discard()
            raise_if_disk_full(exc, self.path.parent, self.size)
            raise

    def _settle(self) -> None:
        """Wait for the worker threads; raise what they failed."""
        if self._workers is not None:
            self._workers.drain()
        self._raise_failed()

    def _raise_failed(self) -> None:
        exc = self._workers.error if self._workers is not None else None
        if exc is None:
            return
        self.discard()  # a failed write leaves no partial behind (as before the disk thread)
        if isinstance(exc, OSError):
            raise_if_disk_full(exc, self.path.parent, self.size)
        raise exc

    def _stop_workers(self) -> BaseException | None:
        workers, self._workers = self._workers, None
        return workers.stop() if workers is not None else None

    def flush(self) -> None:
        self._settle()
        if self._file is not None:
            self._file.flush()
            os.fsync(self._file.fileno())

    def close(self) -> None:
        """Keep the partial on disk for a later resume (unless a write failed: then it is gone;
        the caller is already raising why it closes)."""
        if self._stop_workers() is not None:
            self.discard()
            return
        if self._file is not None:
            with contextlib.suppress(OSError):
                self.flush()
            self._file.close()
            self._file = None

    def discard(self) -> None:
        self._stop_workers()
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None
        with contextlib.suppress(OSError):
            self.path.unlink()

    def commit(self, validate: Callable[[Path], None] | None = None) -> Path:
        """Verify size, then digest, then `validate` (what the bytes must be: a GGUF, JSON...);
        rename into place read-only, synced. On any refusal nothing remains. The last fsync
        runs on the sync thread while `validate` reads the bytes (it parses a GGUF header in
        Python: the two overlap)."""
        self._settle()  # every byte written and hashed
        got = digests.from_hasher(self._hasher)
        if self.overflow or self.offset != self.size or got != self.digest:
            self.discard()
            raise DigestMismatchError(
                _mismatch(self.digest, got, self.size, self.offset, more=self.overflow)
            )
        assert self._file is not None
        self._file.flush()
        try:
            if self._workers is None:  # a small blob, or a whole partial resumed: no threads
                _fullsync(self._file.fileno())
            else:
                self._workers.sync.put(True)
            if validate is not None:
                validate(self.path)
            self._settle()  # the fsync, and its error
        except BaseException:
            self.discard()
            raise
        self._stop_workers()
        self._file.close()
        self._file = None
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
