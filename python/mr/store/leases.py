"""Leases: the blobs a pull in progress needs, so that `rm` never collects them.

A pull creates `<root>/.locks/leases/<uuid>.json` (its digests) while holding an exclusive lock on
`<uuid>.lock` for its whole life. GC tries each lease's lock without waiting: held means the pull
is alive and its digests are protected; free means the pull died, and the lease is swept.
Leases are created under the index lock, so GC (which also holds it) sees them consistently.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Iterable
from pathlib import Path

from filelock import FileLock, Timeout

from mr.store import digest as digests
from mr.store.layout import Layout, atomic_write

IN_USE = "inuse"  # held by a server for a loaded model's blobs: `rm` keeps its files


class Lease:
    def __init__(self, layout: Layout, needed: Iterable[str], kind: str = "leases") -> None:
        self._dir = layout.locks_dir / kind
        name = uuid.uuid4().hex
        self._json = self._dir / f"{name}.json"
        self._lock = FileLock(str(self._dir / f"{name}.lock"), timeout=0)
        self.digests = sorted({digests.validate(d) for d in needed})

    def acquire(self) -> Lease:
        self._dir.mkdir(parents=True, exist_ok=True)
        self._lock.acquire()
        self._write()
        return self

    def add(self, digest: str) -> None:
        """Protect one more digest (a packager that just hashed a file); call under the index
        lock, which GC holds while it reads the leases."""
        self.digests = sorted({*self.digests, digests.validate(digest)})
        self._write()

    def _write(self) -> None:
        """Whole for GC's readers (renamed into place), but not synced: a lease means nothing
        after a crash (its holder is gone, so GC sweeps it), and each fsync is a journal
        commit that the pull waits for."""
        atomic_write(self._json, json.dumps({"pid": os.getpid(), "digests": self.digests}).encode(),
                     durable=False)

    def release(self) -> None:
        with contextlib.suppress(OSError):
            self._json.unlink()
        self._lock.release()
        with contextlib.suppress(OSError):
            Path(self._lock.lock_file).unlink()

    def __enter__(self) -> Lease:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def protected_digests(layout: Layout, kind: str | None = None) -> set[str]:
    """Digests named by live leases (of `kind`, or of every kind); stale leases (their holder
    died) are removed."""
    if kind is None:
        return protected_digests(layout, "leases") | protected_digests(layout, IN_USE)
    directory = layout.locks_dir / kind
    protected: set[str] = set()
    if not directory.is_dir():
        return protected
    for path in directory.glob("*.json"):
        lock = FileLock(str(path.with_suffix(".lock")), timeout=0)
        try:
            lock.acquire()
        except Timeout:
            try:
                names = json.loads(path.read_bytes()).get("digests", [])
            except (OSError, ValueError, AttributeError):
                continue
            protected.update(d for d in names if digests.is_valid(d))
            continue
        try:  # nobody holds it: the pull that wrote it is gone
            with contextlib.suppress(OSError):
                path.unlink()
        finally:
            lock.release()
            with contextlib.suppress(OSError):
                path.with_suffix(".lock").unlink()
    return protected
