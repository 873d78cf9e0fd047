"""Bounds on one pull or push: cancellation, an overall deadline and a minimum transfer rate.

A read timeout alone never fires against a registry that sends one byte a second, and a blocked
socket read cannot be interrupted from Python. So a watchdog thread aborts the guarded
responses' sockets (shutdown(2) wakes the blocked read with an error) when the guard is
cancelled (the client left, the server shuts down), the deadline passes, or fewer than
`min_rate` bytes a second arrived over the last `window` seconds of an open transfer. The
registry client then raises TransferAbortedError instead of retrying.
"""

from __future__ import annotations

import contextlib
import math
import socket
import threading
import time

from mr import config
from mr.store.errors import RegistryError


class TransferAbortedError(RegistryError):
    """The transfer was cancelled, ran past its deadline, or was too slow."""


def _alive(transfer: object) -> bool:
    """A response whose body is still being read, or an upload body still being sent."""
    raw = getattr(transfer, "raw", transfer)
    return not getattr(raw, "closed", True)


class TransferGuard:
    def __init__(self, deadline_s: float | None = None, min_rate: float | None = None,
                 window_s: float | None = None) -> None:
        deadline_s = config.number("MR_PULL_DEADLINE", 6 * 3600.0) if deadline_s is None else deadline_s
        self.min_rate = config.number("MR_PULL_MIN_RATE", 1024.0) if min_rate is None else min_rate  # bytes/s
        self.window = config.number("MR_PULL_RATE_WINDOW", 30.0) if window_s is None else window_s
        self._deadline = time.monotonic() + deadline_s
        self._lock = threading.Lock()
        self._open: set[object] = set()
        self._samples: list[tuple[float, int]] = []  # (when, bytes so far) while a transfer is open
        self._bytes = 0
        self.reason: str | None = None
        self._stop = threading.Event()
        self._watchdog: threading.Thread | None = None

    # ---- used by the registry client --------------------------------------------------------

    def check(self) -> None:
        """Raise TransferAbortedError once the guard has tripped (or trip it on the deadline)."""
        if self.reason is None and time.monotonic() > self._deadline:
            self.reason = "the transfer ran past its deadline"
        if self.reason is not None:
            raise TransferAbortedError(self.reason)

    def opened(self, resp: object) -> None:
        """Watch a response being read (or an upload being sent: anything with `closed`)."""
        with self._lock:
            self._open = {r for r in self._open if _alive(r)}
            self._open.add(resp)
            self._samples = [(time.monotonic(), self._bytes)]
            if self._watchdog is None:
                self._watchdog = threading.Thread(target=self._watch, name="mr-transfer-watchdog",
                                                  daemon=True)
                self._watchdog.start()
        if self.reason is not None:
            self._abort(resp)

    def closed(self, resp: object) -> None:
        with self._lock:
            self._open.discard(resp)

    def advance(self, n: int) -> None:
        self._bytes += n

    def sleep(self, seconds: float) -> None:
        """A retry back-off that a cancel cuts short."""
        self._stop.wait(seconds)
        self.check()

    # ---- used by the owner -------------------------------------------------------------------

    def cancel(self, why: str = "the pull was cancelled") -> None:
        self._trip(why)

    def close(self) -> None:
        self._stop.set()

    def _trip(self, why: str) -> None:
        if self.reason is None:
            self.reason = why
        self._stop.set()
        with self._lock:
            responses = list(self._open)
        for resp in responses:
            self._abort(resp)

    def _watch(self) -> None:
        while not self._stop.wait(0.5):
            now = time.monotonic()
            if now > self._deadline:
                self._trip("the transfer ran past its deadline")
                return
            with self._lock:
                # Only a transfer in progress is measured: re-hashing a resumed partial or a
                # retry's back-off moves no bytes and is no stall.
                self._open = {r for r in self._open if _alive(r)}
                if not self._open:
                    continue
                self._samples.append((now, self._bytes))
                while len(self._samples) > 2 and now - self._samples[1][0] >= self.window:
                    self._samples.pop(0)
                first_t, first_b = self._samples[0]
            if now - first_t >= self.window and (self._bytes - first_b) < self.min_rate * (now - first_t):
                self._trip(f"the transfer was slower than {self.min_rate:.0f} bytes/s for "
                           f"{self.window:.0f}s")
                return

    @staticmethod
    def _abort(resp: object) -> None:
        """Wake a read blocked on `resp`'s socket with shutdown(2). A streamed response holds
        its urllib3 connection until its body is read; an upload body has no socket of its own
        (it stops at its next chunk)."""
        connection = getattr(getattr(resp, "raw", None), "connection", None)
        shutdown = getattr(getattr(connection, "sock", None), "shutdown", None)
        if shutdown is not None:
            with contextlib.suppress(OSError):
                shutdown(socket.SHUT_RDWR)


def default_guard() -> TransferGuard:
    """The guard of a pull or push that nobody else bounds (the CLI's): the server's minimum
    rate, but a deadline only when MR_PULL_DEADLINE sets one. A person watching can press
    Ctrl+C, and a large model on a slow link may need longer than the server's six hours."""
    return TransferGuard(deadline_s=config.number("MR_PULL_DEADLINE", math.inf))
