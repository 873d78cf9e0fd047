"""Turning token bytes into text that is always valid UTF-8, and cutting it at stop strings."""

from __future__ import annotations

import codecs


class Utf8Stream:
    """Decodes token pieces incrementally: a character split across tokens is held back until its
    last byte arrives; bytes that can never form a character become U+FFFD."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, data: bytes) -> str:
        return self._decoder.decode(data)

    def flush(self) -> str:
        return self._decoder.decode(b"", final=True)


class StopMatcher:
    """Finds stop strings in streamed text, also when one is split across pieces.

    Text that could still be the start of a stop string is held back; the stop string itself and
    everything after it are never returned.
    """

    def __init__(self, stops: list[str]) -> None:
        self._stops = [s for s in stops if s]
        self._hold = max((len(s) for s in self._stops), default=1) - 1
        self._buffer = ""
        self.stopped = False
        self.matched: str | None = None  # the stop string that ended the text

    def feed(self, text: str) -> str:
        """Return the text that is safe to emit now."""
        if self.stopped:
            return ""
        if not self._stops:
            return text
        self._buffer += text
        found = self._earliest_stop()
        if found is not None:
            cut, self.matched = found
            out, self._buffer, self.stopped = self._buffer[:cut], "", True
            return out
        keep = self._longest_partial_suffix()
        out = self._buffer[: len(self._buffer) - keep]
        self._buffer = self._buffer[len(self._buffer) - keep :]
        return out

    def flush(self) -> str:
        out, self._buffer = ("" if self.stopped else self._buffer), ""
        return out

    def _earliest_stop(self) -> tuple[int, str] | None:
        found = [(i, s) for s in self._stops if (i := self._buffer.find(s)) >= 0]
        return min(found, key=lambda hit: hit[0]) if found else None

    def _longest_partial_suffix(self) -> int:
        tail = self._buffer[-self._hold :] if self._hold else ""
        for n in range(len(tail), 0, -1):
            if any(stop.startswith(tail[-n:]) for stop in self._stops):
                return n
        return 0
