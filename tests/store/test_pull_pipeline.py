"""What makes a pull fast, with its guarantees kept: a download's worker threads
(mr.store.blobs._Workers) overlap the hashing, the writes and the syncs, while the digest is
still checked before the commit, the commit synced before the rename, and a failed sync fails
the commit and leaves nothing behind; a body is decoded only when it is encoded; a lease is
written whole but not synced."""

from __future__ import annotations

import errno
import gzip
import hashlib
import json
import os
import threading
import time
from pathlib import Path

import pytest

from mr.store import Store, blobs, package_gguf
from mr.store import pull as pull_mod
from mr.store.leases import Lease
from mr.store.pull import pull
from support.registry_stub import Fault, StubRegistry

MIB = 1 << 20
WAIT = 5.0  # seconds a test waits for what should happen at once


def _blob(n_mib: int) -> tuple[bytes, str]:
    data = os.urandom(n_mib * MIB)
    return data, "sha256:" + hashlib.sha256(data).hexdigest()


def _opened(store: Store, digest: str, data: bytes) -> blobs.PartialBlob:
    partial = store.blobs.partial(digest, len(data))
    partial.open()
    return partial


def _write_in_mib(partial: blobs.PartialBlob, data: bytes) -> None:
    for i in range(0, len(data), MIB):
        partial.write(data[i:i + MIB])


def _wait_for(condition, timeout: float = WAIT) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return False


def test_writes_never_wait_for_an_early_sync(store: Store, monkeypatch) -> None:
    """An fdatasync asked for during the download runs beside the writes: a slow disk sync
    does not hold the bytes behind it (nor, through the bounded queue, the socket reads)."""
    monkeypatch.setattr(blobs, "EARLY_SYNC", MIB)
    release = threading.Event()
    syncs: list[int] = []

    def slow_sync(fd: int) -> None:
        syncs.append(fd)
        release.wait(WAIT)

    monkeypatch.setattr(blobs, "_datasync", slow_sync)
    data, digest = _blob(6)
    partial = _opened(store, digest, data)
    try:
        _write_in_mib(partial, data)
        assert _wait_for(lambda: bool(syncs)), "no early sync was asked for"
        on_disk = _wait_for(lambda: partial.path.stat().st_size == len(data))
        assert on_disk and not release.is_set(), "the writes waited for the early sync"
    finally:
        release.set()
    final = partial.commit()
    assert final.read_bytes() == data
    assert not partial.path.exists()


def test_hashing_goes_on_while_a_write_waits(store: Store, monkeypatch) -> None:
    release = threading.Event()
    real_write = blobs._write

    def slow_write(f, data: bytes) -> None:
        release.wait(WAIT)
        real_write(f, data)

    monkeypatch.setattr(blobs, "_write", slow_write)
    data, digest = _blob(4)
    partial = _opened(store, digest, data)
    try:
        _write_in_mib(partial, data)
        assert partial._workers is not None
        hashed = threading.Thread(target=partial._workers.hash.drain, daemon=True)
        hashed.start()
        hashed.join(WAIT)
        assert not hashed.is_alive() and not release.is_set(), "the hashing waited for the disk"
    finally:
        release.set()
    assert partial.commit().read_bytes() == data


def test_the_commit_syncs_while_the_check_reads_and_renames_after(store: Store,
                                                                  monkeypatch) -> None:
    """The last fsync overlaps `validate` (an Ollama layer's GGUF check); the rename waits
    for both."""
    events: list[str] = []
    syncing, checked = threading.Event(), threading.Event()
    real_sync, real_replace = blobs._fullsync, os.replace

    def final_sync(fd: int) -> None:
        syncing.set()
        events.append("overlapped" if checked.wait(WAIT) else "sync alone")
        real_sync(fd)
        events.append("synced")

    def check(path: Path) -> None:
        syncing.wait(WAIT)
        events.append("checked")
        checked.set()

    def replace(src, dst, *args, **kwargs):
        if str(dst) == str(partial.final):
            events.append("renamed")
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(blobs, "_fullsync", final_sync)
    monkeypatch.setattr(blobs.os, "replace", replace)
    data, digest = _blob(2)
    partial = store.blobs.partial(digest, len(data))
    partial.open()
    partial.write(data)
    partial.commit(check)
    assert events == ["checked", "overlapped", "synced", "renamed"]
    assert store.blobs.has(digest, len(data))


@pytest.mark.parametrize("which", ["early", "final", "final, small blob"])
def test_a_failed_sync_fails_the_commit(which: str, store: Store, monkeypatch) -> None:
    def broken(_fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(blobs, "EARLY_SYNC", MIB)
    monkeypatch.setattr(blobs, "_datasync" if which == "early" else "_fullsync", broken)
    data, digest = _blob(3)
    if which == "final, small blob":
        data = data[:blobs.INLINE]
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
    before = set(threading.enumerate())
    partial = _opened(store, digest, data)
    with pytest.raises(OSError, match="Input/output error"):
        _write_in_mib(partial, data)
        partial.commit()
    assert not store.blobs.has(digest)
    assert not partial.path.exists()
    assert not [t for t in set(threading.enumerate()) - before if t.name.startswith("mr-blob-")]


def test_a_small_blob_starts_no_thread(store: Store, monkeypatch) -> None:
    """A config or a params layer: the worker threads would cost more than they save."""
    started: list[str] = []
    real_start = threading.Thread.start

    def start(thread: threading.Thread) -> None:
        started.append(thread.name)
        real_start(thread)

    monkeypatch.setattr(threading.Thread, "start", start)
    data = os.urandom(blobs.INLINE)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    partial = store.blobs.partial(digest, len(data))
    partial.open()
    partial.write(data[:1000])
    partial.write(data[1000:])
    partial.commit()
    assert store.blobs.path(digest).read_bytes() == data
    assert not [name for name in started if name.startswith("mr-blob-")]


def test_a_wrong_digest_is_refused_before_any_sync(store: Store, monkeypatch) -> None:
    syncs: list[int] = []
    monkeypatch.setattr(blobs, "_fullsync", syncs.append)
    data, digest = _blob(1)
    partial = store.blobs.partial(digest, len(data))
    partial.open()
    partial.write(bytes(len(data)))
    with pytest.raises(blobs.DigestMismatchError, match="digest mismatch"):
        partial.commit()
    assert syncs == [] and not partial.path.exists() and not store.blobs.has(digest)


def test_an_encoded_body_is_still_decoded(stub: StubRegistry, store: Store, make_gguf,
                                          fast_client, tmp_path: Path) -> None:
    """mr asks for identity and reads such a body as it comes; a registry (or a proxy) that
    gzips the blob anyway is decoded, and the digest is checked on the decoded bytes."""
    source = Store(tmp_path / "source")
    model = package_gguf(source, make_gguf(rows=4096), "m")
    stub.add_from_store(source, "m", "test/m", "v1")
    digest = model.manifest.weights[0].digest
    weights = source.blobs.path(digest).read_bytes()
    stub.faults.append(Fault(f"/blobs/{digest}", "status", status=200, body=gzip.compress(weights),
                             headers={"Content-Encoding": "gzip"}))
    pulled = pull(store, f"{stub.host}/test/m:v1", client=fast_client(stub.host))
    assert pulled.model.gguf_path.read_bytes() == weights
    assert stub.faults[0].times == 0  # the gzipped body was the one read


def test_a_lease_is_whole_but_not_synced(store: Store, monkeypatch) -> None:
    """A lease means nothing after a crash (its holder is gone and GC sweeps it): it is renamed
    into place for GC's readers, never synced."""
    store.layout.ensure()
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd))[1])
    digest = "sha256:" + "ab" * 32
    with Lease(store.layout, [digest]) as lease:
        lease.add("sha256:" + "cd" * 32)
        written = json.loads(lease._json.read_bytes())
    assert written["digests"] == ["sha256:" + "ab" * 32, "sha256:" + "cd" * 32]
    assert synced == []


def test_a_large_read_is_handed_over_as_it_is(stub: StubRegistry, store: Store, make_gguf,
                                              fast_client, tmp_path: Path, monkeypatch) -> None:
    """A read of HAND_OVER bytes or more goes to the workers as the very object read (no join,
    no copy); the bytes are all there, in order."""
    source = Store(tmp_path / "source")
    model = package_gguf(source, make_gguf(rows=16384), "m")
    stub.add_from_store(source, "m", "test/m", "v1")
    digest = model.manifest.weights[0].digest
    weights = source.blobs.path(digest).read_bytes()
    monkeypatch.setattr(pull_mod, "HAND_OVER", 1)
    resp = fast_client(stub.host).open_blob("test/m", digest)
    reads: list[bytes] = []
    real_read1 = resp.raw.read1

    def read1(*args, **kwargs) -> bytes:
        reads.append(real_read1(*args, **kwargs))
        return reads[-1]

    resp.raw.read1 = read1
    with resp:
        chunks = list(pull_mod._chunks(resp, None))
    assert b"".join(chunks) == weights
    assert len(chunks) == len(reads) - 1  # the last read is the empty end of the body
    assert all(chunk is read for chunk, read in zip(chunks, reads, strict=False))


def _served(stub: StubRegistry, make_gguf, tmp_path: Path):
    source = Store(tmp_path / "source")
    model = package_gguf(source, make_gguf(rows=4096), "m")
    stub.add_from_store(source, "m", "test/m", "v1")
    return model


def test_the_small_blobs_come_while_the_weights_stream(stub: StubRegistry, store: Store,
                                                        make_gguf, fast_client, tmp_path: Path,
                                                        monkeypatch) -> None:
    """The config (a round trip and two fsyncs) is fetched beside the weights, not after."""
    model = _served(stub, make_gguf, tmp_path)
    weights, config = model.manifest.weights[0].digest, model.manifest.config.digest
    stub.faults.append(Fault(f"/blobs/{weights}", "slow", delay=0.01))  # about 0.7 s
    committed: list[str] = []
    real_commit = blobs.PartialBlob.commit

    def commit(self, *args, **kwargs):
        final = real_commit(self, *args, **kwargs)
        committed.append(self.digest)
        return final

    monkeypatch.setattr(blobs.PartialBlob, "commit", commit)
    pull(store, f"{stub.host}/test/m:v1", client=fast_client(stub.host))
    assert committed == [config, weights]


def test_a_small_blob_that_fails_fails_the_pull_after_the_weights(stub: StubRegistry,
                                                                   store: Store, make_gguf,
                                                                   fast_client,
                                                                   tmp_path: Path) -> None:
    model = _served(stub, make_gguf, tmp_path)
    weights, config = model.manifest.weights[0].digest, model.manifest.config.digest
    stub.faults.append(Fault(f"/blobs/{config}", "status", status=500, times=100))
    with pytest.raises(pull_mod.RegistryError, match=r"500"):
        pull(store, f"{stub.host}/test/m:v1", client=fast_client(stub.host))
    assert store.blobs.has(weights) and not store.blobs.has(config) and store.list() == []
    assert not [t for t in threading.enumerate() if t.name == "mr-pull-small-blobs"]
    stub.faults.clear()
    again = pull(store, f"{stub.host}/test/m:v1", client=fast_client(stub.host))
    assert again.bytes_downloaded == model.manifest.config.size  # only the config, now
