"""Byte counts as text, one form for every layer (stdlib only, so any module may import it)."""

from __future__ import annotations

_UNITS = ("KiB", "MiB", "GiB", "TiB")


def human_bytes(n: float) -> str:
    """Binary units, two decimals, no space: "1000B", "256.35MiB" (Docker Model Runner's form,
    which its config's `size` field and `docker model list` show)."""
    if abs(n) < 1024:
        return f"{int(n)}B"
    value = float(n)
    for unit in _UNITS:
        value /= 1024
        if abs(value) < 1024 or unit == _UNITS[-1]:
            break
    return f"{value:.2f}{unit}"
