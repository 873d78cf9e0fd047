"""Give freed native memory back to the system after a model is unloaded.

An engine's KV cache and compute buffers are large mallocs; glibc raises its mmap threshold
after freeing big mapped chunks, so later buffers come from the heap and stay resident after
they are freed: RSS would climb with every unload/reload even though nothing leaks.
malloc_trim(0) returns the free heap pages. A no-op where glibc is not the allocator.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
from collections.abc import Callable

log = logging.getLogger("mr.runner")
_libc: ctypes.CDLL | None = None
_loaded = False


def _malloc_trim() -> Callable[[int], int] | None:
    global _libc, _loaded
    if not _loaded:
        _loaded = True
        name = ctypes.util.find_library("c")
        try:
            _libc = ctypes.CDLL(name) if name else None
        except OSError:
            _libc = None
    return getattr(_libc, "malloc_trim", None) if _libc is not None else None


M_ARENA_MAX = -8  # glibc's mallopt parameter


def limit_arenas(count: int = 2) -> None:
    """Fewer malloc arenas: each engine thread would otherwise get its own, and freed buffers
    fragment across up to 8 per core, which malloc_trim cannot give back (RSS creeps with every
    reload). A server's hot paths are native and single-threaded per engine, so 2 are plenty."""
    _malloc_trim()
    mallopt = getattr(_libc, "mallopt", None) if _libc is not None else None
    if mallopt is not None:
        try:
            mallopt(M_ARENA_MAX, count)
        except Exception:
            log.debug("mallopt failed", exc_info=True)


def release_freed_memory() -> None:
    """After an unload: collect garbage cycles first (an engine a cycle still reaches keeps its
    KV cache and buffers until a full collection), then return the free heap pages."""
    gc.collect()
    trim = _malloc_trim()
    if trim is not None:
        try:
            trim(0)
        except Exception:  # a libc without it: nothing to give back
            log.debug("malloc_trim failed", exc_info=True)
