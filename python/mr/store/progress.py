"""Progress of pulls and pushes: tqdm bars on a terminal, events for a server, or nothing.

Events have Docker Model Runner's `POST /models/create` shape:
`{"type": "progress", "message", "total", "pulled", "layer": {"id", "size", "current"}}`.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, NoReturn

from mr.jsontypes import JSON

if TYPE_CHECKING:
    from tqdm import tqdm

Event = JSON
EventSink = Callable[[Event], None]


class Progress:
    """No output; the base every reporter extends."""

    def start(self, layer: str, size: int, initial: int = 0) -> None: ...

    def advance(self, layer: str, n: int) -> None: ...

    def reset(self, layer: str, current: int = 0) -> None: ...

    def done(self, layer: str) -> None: ...

    def message(self, text: str) -> None: ...

    def close(self) -> None: ...


class TqdmProgress(Progress):
    """One bar per layer on stderr (only built when stderr is a terminal)."""

    def __init__(self, verb: str = "Downloading") -> None:
        self._bars: dict[str, tqdm[NoReturn]] = {}  # bars without an iterable
        self._verb = verb

    def start(self, layer: str, size: int, initial: int = 0) -> None:
        from tqdm import tqdm

        label = layer.split(":", 1)[-1][:12]
        self._bars[layer] = tqdm(total=size, initial=initial, unit="B", unit_scale=True,
                                 unit_divisor=1024, desc=f"{self._verb} {label}", file=sys.stderr,
                                 leave=True, dynamic_ncols=True)

    def advance(self, layer: str, n: int) -> None:
        bar = self._bars.get(layer)
        if bar is not None:
            bar.update(n)

    def reset(self, layer: str, current: int = 0) -> None:
        bar = self._bars.get(layer)
        if bar is not None:
            bar.n = current
            bar.refresh()

    def done(self, layer: str) -> None:
        bar = self._bars.pop(layer, None)
        if bar is not None:
            bar.close()

    def message(self, text: str) -> None:
        from tqdm import tqdm

        tqdm.write(text, file=sys.stderr)

    def close(self) -> None:
        for layer in list(self._bars):
            self.done(layer)


class EventProgress(Progress):
    """Calls `sink(event)` at most every `interval_s` per layer, and at each layer's end."""

    def __init__(self, sink: EventSink, total: int = 0, interval_s: float = 0.1) -> None:
        self._sink = sink
        self._total = total
        self._interval = interval_s
        self._layers: dict[str, list[int]] = {}
        self._pulled = 0
        self._last = 0.0

    def _emit(self, layer: str, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < self._interval:
            return
        self._last = now
        size, current = self._layers[layer]
        self._sink({
            "type": "progress",
            "message": f"Downloaded: {current / 1e6:.2f} MB of {size / 1e6:.2f} MB",
            "total": self._total,
            "pulled": self._pulled,
            "layer": {"id": layer, "size": size, "current": current},
        })

    def start(self, layer: str, size: int, initial: int = 0) -> None:
        self._layers[layer] = [size, initial]
        self._pulled += initial
        self._emit(layer, force=True)

    def advance(self, layer: str, n: int) -> None:
        self._layers[layer][1] += n
        self._pulled += n
        self._emit(layer)

    def reset(self, layer: str, current: int = 0) -> None:
        state = self._layers[layer]
        self._pulled += current - state[1]
        state[1] = current

    def done(self, layer: str) -> None:
        if layer in self._layers:
            self._emit(layer, force=True)

    def message(self, text: str) -> None:
        self._sink({"type": "progress", "message": text, "total": self._total,
                    "pulled": self._pulled})


class Fanout(Progress):
    def __init__(self, *reporters: Progress) -> None:
        self._all = reporters

    def start(self, layer: str, size: int, initial: int = 0) -> None:
        for p in self._all:
            p.start(layer, size, initial)

    def advance(self, layer: str, n: int) -> None:
        for p in self._all:
            p.advance(layer, n)

    def reset(self, layer: str, current: int = 0) -> None:
        for p in self._all:
            p.reset(layer, current)

    def done(self, layer: str) -> None:
        for p in self._all:
            p.done(layer)

    def message(self, text: str) -> None:
        for p in self._all:
            p.message(text)

    def close(self) -> None:
        for p in self._all:
            p.close()


class Serialized(Progress):
    """A reporter used from several threads (a pull's blobs side by side): one call at a time."""

    def __init__(self, inner: Progress) -> None:
        self._inner = inner
        self._lock = threading.Lock()

    def start(self, layer: str, size: int, initial: int = 0) -> None:
        with self._lock:
            self._inner.start(layer, size, initial)

    def advance(self, layer: str, n: int) -> None:
        with self._lock:
            self._inner.advance(layer, n)

    def reset(self, layer: str, current: int = 0) -> None:
        with self._lock:
            self._inner.reset(layer, current)

    def done(self, layer: str) -> None:
        with self._lock:
            self._inner.done(layer)

    def message(self, text: str) -> None:
        with self._lock:
            self._inner.message(text)

    def close(self) -> None:
        with self._lock:
            self._inner.close()


def make(progress: bool, on_event: EventSink | None, total: int = 0,
         verb: str = "Downloading") -> Progress:
    """Bars only when asked and stderr is a terminal; events when a sink is given."""
    reporters: list[Progress] = []
    if progress and sys.stderr.isatty():
        reporters.append(TqdmProgress(verb))
    if on_event is not None:
        reporters.append(EventProgress(on_event, total))
    if not reporters:
        return Progress()
    return reporters[0] if len(reporters) == 1 else Fanout(*reporters)
