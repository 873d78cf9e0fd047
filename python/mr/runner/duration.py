"""Keep-alive durations as Docker Model Runner and Ollama write them: "5m", "1h30m", 300, "-1", "0".

A number means seconds. A negative value means "keep loaded forever"; zero means "unload as soon
as the request ends". Parsed values are seconds as a float (math.inf for forever).
"""

from __future__ import annotations

import math
import re

from mr.errors import InvalidArgumentError

FOREVER = math.inf
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
MAX_SECONDS = 10 * 365 * 86400.0  # longer than this is "forever" for every practical purpose


def parse_duration(value: str | float | int | None, param: str = "keep_alive") -> float | None:
    """Seconds (FOREVER for negative values); None when `value` is None or an empty string."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        raise _bad(param, value)
    if isinstance(value, int | float):
        return _seconds(float(value), param)
    text = value.strip()
    try:
        return _seconds(float(text), param)
    except ValueError:
        pass
    sign = -1.0 if text.startswith("-") else 1.0
    body = text.lstrip("+-")
    total, pos = 0.0, 0
    for match in _PART.finditer(body):
        if match.start() != pos:
            raise _bad(param, value)
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos != len(body) or not body:
        raise _bad(param, value)
    return _seconds(sign * total, param)


def _seconds(value: float, param: str) -> float:
    if math.isnan(value):
        raise _bad(param, value)
    if value < 0 or value > MAX_SECONDS:
        return FOREVER
    return value


def _bad(param: str, value: object) -> InvalidArgumentError:
    err = InvalidArgumentError(f"{param} must be a duration such as 5m, 30s, 1h, 0 or -1, got {value!r}")
    err.param = param
    return err


def format_duration(seconds: float | None) -> str:
    """300 -> "5m", 90 -> "1m30s", FOREVER -> "forever", 0 -> "0s"."""
    if seconds is None:
        return ""
    if math.isinf(seconds):
        return "forever"
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{hours}h" if hours else "", f"{minutes}m" if minutes else "", f"{secs}s" if secs else ""]
    return "".join(parts) or "0s"
