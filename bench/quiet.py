"""How busy the machine is with other work: sampled between repetitions, while the bench is idle.

On a shared machine another process on the same cores wrecks llama.cpp's thread barriers (every
barrier of a decode step waits for a thread that is not running), so the suite records how many
cores were busy before each repetition and can wait (bounded) for a quiet moment.
"""

from __future__ import annotations

import os
import time
from pathlib import Path


def _busy_idle() -> tuple[int, int] | None:
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields[:8]) - idle, idle


def busy_cores(interval: float = 0.25) -> float:
    """Cores busy over `interval` seconds (all processes); NaN where /proc/stat is missing."""
    first = _busy_idle()
    time.sleep(interval)
    second = _busy_idle()
    if first is None or second is None:
        return float("nan")
    busy, idle = second[0] - first[0], second[1] - first[1]
    total = busy + idle
    return busy / total * (os.cpu_count() or 1) if total else 0.0


def settle(max_wait: float, threshold: float = 0.3) -> float:
    """Wait up to `max_wait` seconds for fewer than `threshold` busy cores; the last reading."""
    deadline = time.monotonic() + max_wait
    reading = busy_cores()
    while reading >= threshold and time.monotonic() < deadline:
        reading = busy_cores()
    return reading
