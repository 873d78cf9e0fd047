"""Text output of the store verbs: Docker-style relative times and border-less tables."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone

from mr.store.model import LocalModel
from mr.units import human_bytes

LIST_COLUMNS = ("MODEL NAME", "PARAMETERS", "QUANTIZATION", "ARCHITECTURE", "MODEL ID",
                "CREATED", "CONTEXT", "SIZE")


def human_duration(seconds: float) -> str:
    """go-units' HumanDuration: "Less than a second", "About a minute", "3 months"..."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    minutes = int(seconds / 60)
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = int(seconds / 3600 + 0.5)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{int(seconds / 3600) // 24 // 365} years"


def ago(when: datetime | None, now: datetime | None = None) -> str:
    if when is None:
        return ""
    now = now or datetime.now(timezone.utc)
    return f"{human_duration((now - when).total_seconds())} ago"


def table(header: Sequence[str], rows: Sequence[Sequence[str]], gap: int = 3) -> str:
    """Left-aligned columns separated by at least `gap` spaces, no borders."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = []
    for row in [header, *rows]:
        cells = [str(c).ljust(w) for c, w in zip(row, widths, strict=True)]
        lines.append((" " * gap).join(cells).rstrip())
    return "\n".join(lines)


def list_rows(models: Sequence[LocalModel], now: datetime | None = None) -> list[list[str]]:
    """One row per tag (`<none>` when untagged), COMPAT.md's columns."""
    rows = []
    for m in models:
        cfg = m.config
        context = str(m.context_size) if m.context_size else ""
        base = [str(cfg.get("parameters") or ""), str(cfg.get("quantization") or ""),
                str(cfg.get("architecture") or ""), m.short_id, ago(m.created, now), context,
                str(cfg.get("size") or human_bytes(m.size))]
        for name in m.display_tags or ["<none>"]:
            rows.append([name, *base])
    return rows


def list_table(models: Sequence[LocalModel], now: datetime | None = None) -> str:
    return table(LIST_COLUMNS, list_rows(models, now))
