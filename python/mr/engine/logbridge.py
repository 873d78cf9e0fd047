"""llama.cpp's log lines go to Python's `logging` under the `mr.llama` logger (quiet by default)."""

from __future__ import annotations

import atexit
import logging

from mr import _native, config

LOGGER = logging.getLogger("mr.llama")
LOGGER.addHandler(logging.NullHandler())  # quiet unless the application configures logging
_TO_PY = {1: logging.DEBUG, 2: logging.INFO, 3: logging.WARNING, 4: logging.ERROR}
_TO_GGML = {logging.DEBUG: 1, logging.INFO: 2, logging.WARNING: 3, logging.ERROR: 4}
_installed = False


def _forward(level: int, message: str) -> None:
    LOGGER.log(_TO_PY.get(level, logging.INFO), "%s", message)


def install(level: str | int | None = None) -> None:
    """Route llama.cpp's log to `mr.llama`; lines below `level` are dropped in C++."""
    global _installed
    py_level = logging.getLevelName(level or config.log_level()) if not isinstance(level, int) else level
    if not isinstance(py_level, int):
        py_level = logging.WARNING
    ggml_level = max((g for p, g in _TO_GGML.items() if p <= py_level), default=1)
    _native.set_log_handler(_forward, ggml_level)
    if not _installed:
        atexit.register(_native.clear_log_handler)  # no callbacks into a finalising interpreter
        _installed = True
