"""Pull: manifest, then each missing blob (resumed, verified, committed), then the index.

Per blob: a cross-process lock (each blob downloaded once), `<hex>.incomplete` resumed with a
Range request (a registry that ignores Range restarts it from zero, never appends), retries with
capped backoff on network errors, size then digest verified before the atomic rename (and, for
an Ollama artifact, what each layer's bytes must be). The manifest and the index entry are
written only when every blob is present. A registry with mirrors (MR_REGISTRY_MIRRORS) is asked
through them first, then itself.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import requests
from urllib3.exceptions import DecodeError, ProtocolError, ReadTimeoutError, SSLError

from mr.errors import ModelNotFoundError
from mr.store import artifact, mirrors, ollama
from mr.store import progress as progress_mod
from mr.store import reference as refs
from mr.store.blobs import PartialBlob
from mr.store.errors import (
    DigestMismatchError,
    DiskFullError,
    InvalidManifestError,
    RegistryError,
)
from mr.store.layout import free_bytes
from mr.store.model import LocalModel
from mr.store.progress import EventSink, Progress
from mr.store.registry import NETWORK_ERRORS, RegistryClient
from mr.store.store import Store
from mr.store.transfer import TransferAbortedError, TransferGuard, default_guard
from mr.units import human_bytes

log = logging.getLogger("mr.store")

Check = Callable[[artifact.Descriptor, Path], None]
# What a mirror's failure can be that the source may not share: ask the source then.
_FALLBACK = (RegistryError, ModelNotFoundError)

# The socket's bytes are taken as they arrive (read1, at most NET_CHUNK at a time: a cut
# connection loses none of them). A piece of HAND_OVER bytes or more goes to the hashing and
# disk threads as it is (no copy: on a fast link one read brings most of a megabyte); smaller
# pieces are gathered to that size first, or for HAND_OVER_S on a slow link, so that the
# progress bar and the partial on disk follow a trickle too.
NET_CHUNK = 1 << 20
HAND_OVER = 256 << 10
HAND_OVER_S = 0.25


@dataclass
class PullResult:
    model: LocalModel
    downloaded: bool  # False: the model was already present
    bytes_downloaded: int = 0


def _content_range_start(value: str | None) -> int | None:
    # "bytes 100-199/200"
    if not value or not value.startswith("bytes "):
        return None
    start = value[6:].split("-", 1)[0]
    return int(start) if start.isdigit() else None


class BlobDownloader:
    def __init__(self, store: Store, client: RegistryClient, repository: str,
                 report: Progress, sleep: Callable[[float], None] = time.sleep,
                 check: Check | None = None) -> None:
        self.store = store
        self.client = client
        self.repository = repository
        self.report = report
        self.sleep = sleep
        self.check = check
        self.checked: set[tuple[str, str]] = set()  # (digest, media type) checked at its commit

    def fetch(self, desc: artifact.Descriptor) -> int:
        """Make sure the blob is committed; returns the bytes downloaded."""
        blobs = self.store.blobs
        with blobs.lock(desc.digest):
            if blobs.has(desc.digest, desc.size):
                self.report.start(desc.digest, desc.size, desc.size)
                self.report.done(desc.digest)
                return 0
            _refuse_size_conflict(self.store, desc)  # committed since the check before the pull
            partial = blobs.partial(desc.digest, desc.size)
            resumed = partial.open() > 0
            self.report.start(desc.digest, desc.size, partial.offset)
            received = 0
            check = self.check
            validate = (lambda path: check(desc, path)) if check is not None else None
            try:
                received += self._stream(partial)
                try:
                    partial.commit(validate)
                except DigestMismatchError:
                    if not resumed:
                        raise
                    # the kept partial was bad (tampered, or a different upload): start over once
                    partial.open()
                    self.report.reset(desc.digest, 0)
                    received += self._stream(partial)
                    partial.commit(validate)
            except BaseException:
                partial.close()  # a partial that passed no check is kept only for a resume
                raise
            if validate is not None:
                self.checked.add((desc.digest, desc.mediaType))
            self.report.done(desc.digest)
            return received

    def _stream(self, partial: PartialBlob) -> int:
        """Fill the partial from the registry, resuming after network errors."""
        received = 0
        failures = 0
        restarts = 0
        policy = self.client.retry
        while partial.offset < partial.size and not partial.overflow:
            resp = self.client.open_blob(self.repository, partial.digest, partial.offset)
            with resp:
                status = resp.status_code
                start = _content_range_start(resp.headers.get("Content-Range"))
                if status == 416 or (status == 206 and start != partial.offset) or (
                    status == 200 and partial.offset > 0
                ):
                    # Range refused or ignored: start over from zero, never append
                    restarts += 1
                    if restarts > policy.attempts:
                        raise RegistryError(f"registry {self.client.host}: cannot resume download")
                    partial.restart()
                    self.report.reset(partial.digest, 0)
                    if status != 200:
                        continue
                before = partial.offset
                try:
                    for chunk in _chunks(resp, self.client.guard):
                        partial.write(chunk)
                        received += len(chunk)
                        self.report.advance(partial.digest, len(chunk))
                        if partial.overflow:
                            break
                except NETWORK_ERRORS as exc:
                    partial.flush()
                    self.client.check()  # cancelled or too slow: stop, keep the partial
                    failures = 0 if partial.offset > before else failures + 1
                    if failures >= policy.attempts:
                        raise RegistryError(
                            f"download of {partial.digest} from {self.client.host} keeps failing"
                        ) from exc
                    partial.flush()
                    self.sleep(policy.delay(failures))
                    continue
            break  # the body ended cleanly: commit decides whether it was all there
        return received


def _chunks(resp: requests.Response, guard: TransferGuard | None) -> Iterator[bytes]:
    """The body in chunks of HAND_OVER bytes or more (or what came in HAND_OVER_S), each read
    counted by the guard (its rate check sees a trickle as it comes). What arrived before a
    network error is yielded before the error is raised, as requests' error (as iter_content
    raises it): the resume keeps it."""
    pieces: list[bytes] = []
    held = 0
    handed = time.monotonic()
    # Asked to decode, urllib3 copies every piece through a buffer of its own even when there
    # is nothing to decode: an identity body (what the registry is asked for) is taken as read.
    decode = resp.headers.get("Content-Encoding", "identity").strip().lower() not in ("", "identity")
    try:
        while piece := resp.raw.read1(NET_CHUNK, decode_content=decode):
            if guard is not None:
                guard.advance(len(piece))
            pieces.append(piece)
            held += len(piece)
            if held >= HAND_OVER or time.monotonic() - handed >= HAND_OVER_S:
                yield pieces[0] if len(pieces) == 1 else b"".join(pieces)
                pieces, held, handed = [], 0, time.monotonic()
    except (ProtocolError, ReadTimeoutError, DecodeError, SSLError) as exc:
        if pieces:
            yield b"".join(pieces)
        raise _as_requests_error(exc) from exc
    if pieces:
        yield b"".join(pieces)


def _as_requests_error(exc: Exception) -> requests.RequestException:
    """What requests' iter_content raises for urllib3's errors (NETWORK_ERRORS expects them)."""
    if isinstance(exc, ProtocolError):
        return requests.exceptions.ChunkedEncodingError(exc)
    if isinstance(exc, DecodeError):
        return requests.exceptions.ContentDecodingError(exc)
    if isinstance(exc, SSLError):
        return requests.exceptions.SSLError(exc)
    return requests.ConnectionError(exc)


def _fetch_all(fetcher: BlobDownloader, needed: list[artifact.Descriptor]) -> int:
    """Every blob: the largest on this thread, the others (a config, params, a template: each
    a round trip and two fsyncs) on one beside it, so that the weights' transfer hides them.
    Both finish before an error is raised (this thread's first); an interrupt (Ctrl+C) does
    not wait for the small ones. Returns the bytes downloaded."""
    if len(needed) < 2:
        return sum(fetcher.fetch(desc) for desc in needed)
    largest = max(needed, key=lambda desc: desc.size)
    others = [desc for desc in needed if desc is not largest]
    fetched: list[int] = []
    failed: list[Exception] = []

    def fetch_others() -> None:
        try:
            fetched.append(sum(fetcher.fetch(desc) for desc in others))
        except Exception as exc:  # raised on the pull's thread once the largest is done
            failed.append(exc)

    helper = threading.Thread(target=fetch_others, name="mr-pull-small-blobs", daemon=True)
    helper.start()
    try:
        received = fetcher.fetch(largest)
    except Exception:
        helper.join()
        raise
    helper.join()
    if failed:
        raise failed[0]
    return received + fetched[0]


def _refuse_size_conflict(store: Store, desc: artifact.Descriptor) -> None:
    """A committed blob was verified by its digest when it came in, so a manifest giving that
    digest another size is wrong: refused. Removing the blob instead would let any manifest
    delete what other models use (the blob is theirs; this pull holds no claim on it)."""
    try:
        held = store.blobs.path(desc.digest).stat().st_size
    except FileNotFoundError:
        return
    if held != desc.size:
        raise InvalidManifestError(
            f"invalid model manifest: blob {desc.digest} is already in the store with "
            f"{held} bytes, the manifest says {desc.size}"
        )


def _check_space(store: Store, missing: list[artifact.Descriptor], name: str) -> None:
    needed = sum(d.size - store.blobs.partial_size(d.digest) for d in missing)
    free = free_bytes(store.root)
    if needed > free:
        raise DiskFullError(
            f"not enough disk space to pull {name}: need {human_bytes(needed)}, "
            f"free {human_bytes(free)}"
        )


def pull(store: Store, reference: str, *, progress: bool = False,
         on_progress: EventSink | None = None, client: RegistryClient | None = None,
         guard: TransferGuard | None = None) -> PullResult:
    """Pull `reference`. Without a client or a guard (the CLI's pulls) the pull gets the
    default guard: a read timeout alone never fires against a registry that trickles."""
    ref = refs.parse(reference)
    store.layout.ensure()
    own = default_guard() if client is None and guard is None else None
    try:
        if client is not None:
            return _pull(store, ref, client, progress, on_progress)
        return _pull_via_mirrors(store, ref, guard or own, progress, on_progress)
    finally:
        if own is not None:
            own.close()


def _pull_via_mirrors(store: Store, ref: refs.Reference, guard: TransferGuard | None,
                      progress: bool, on_progress: EventSink | None) -> PullResult:
    """Each mirror of the registry in turn, then the registry itself; the name stays the
    source's. A cancelled or too slow pull stops at once: that is the user's, not the mirror's."""
    failures: list[str] = []
    for mirror in mirrors.for_registry(ref.registry):
        try:
            return _pull(store, ref, RegistryClient(mirror, guard=guard), progress, on_progress)
        except TransferAbortedError:
            raise
        except _FALLBACK as exc:
            log.info("mirror %s cannot serve %s (%s); trying the next", mirror, ref.display, exc)
            failures.append(f"mirror {mirror}: {exc}")
    try:
        return _pull(store, ref, RegistryClient(ref.registry, guard=guard), progress, on_progress)
    except TransferAbortedError:
        raise
    except _FALLBACK as exc:
        if not failures:
            raise
        raise type(exc)(f"{exc} (after {'; '.join(failures)})") from exc


def _pull(store: Store, ref: refs.Reference, client: RegistryClient, progress: bool,
          on_progress: EventSink | None) -> PullResult:
    data, content_type, model_id = client.get_manifest(ref)
    manifest = artifact.parse_manifest(data, content_type)
    tag = ref.stored
    needed = manifest.blobs
    for desc in needed:
        _refuse_size_conflict(store, desc)
    present = store.layout.read_index().get(model_id) is not None and all(
        store.blobs.has(d.digest, d.size) for d in needed
    )
    if present:
        store.commit(model_id, data, manifest, tag)
        return PullResult(store.resolve(model_id), downloaded=False)
    total = sum(d.size for d in needed)
    report = progress_mod.Serialized(progress_mod.make(progress, on_progress, total=total))
    with store.lease(d.digest for d in needed):
        missing = [d for d in needed if not store.blobs.has(d.digest, d.size)]
        _check_space(store, missing, ref.display)
        check = ollama.blob_checker(manifest)
        fetcher = BlobDownloader(store, client, ref.repository, report, sleep=client.sleep,
                                 check=check)
        try:
            downloaded = _fetch_all(fetcher, needed)
        finally:
            report.close()
        if check is not None:  # the blobs that were there already are checked too (once)
            for desc in needed:
                if (desc.digest, desc.mediaType) not in fetcher.checked:
                    check(desc, store.blobs.path(desc.digest))
        store.commit(model_id, data, manifest, tag)
    return PullResult(store.resolve(model_id), downloaded=True, bytes_downloaded=downloaded)
