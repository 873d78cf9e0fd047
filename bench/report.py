"""The run's summary as markdown (printed, and written to summary.md for bench/README.md)."""

from __future__ import annotations

import re
from typing import Any

from bench.core import Measure
from bench.results import Results, fmt

PARTS = ("decode", "roofline", "concurrency", "http", "prefix", "embeddings", "load")


def _cell(m: Measure | None) -> str:
    if m is None or not m.runs:
        return ""
    lo, hi = m.spread
    return fmt(m.value) if len(m.runs) == 1 else f"{fmt(m.value)} ({fmt(lo)}-{fmt(hi)})"


def _order(name: str) -> tuple[str, int]:
    """Figures of one kind together, levels ascending: aggregate@1, aggregate@4, ..."""
    match = re.match(r"(.*)@(\d+)$", name)
    return (match.group(1), int(match.group(2))) if match else (name, 0)


def part_table(measures: list[Measure]) -> list[str]:
    systems = list(dict.fromkeys(m.system for m in measures))
    rows = sorted(dict.fromkeys((m.name, m.unit) for m in measures), key=lambda r: _order(r[0]))
    index = {(m.name, m.system): m for m in measures}
    lines = ["| figure | unit | " + " | ".join(systems) + " |", "| --- | --- |" + " --- |" * len(systems)]
    for name, unit in rows:
        cells = [_cell(index.get((name, s))) for s in systems]
        lines.append(f"| {name} | {unit} | " + " | ".join(cells) + " |")
    return lines


def markdown(results: Results, header: dict[str, Any]) -> str:
    lines = [f"### {header['title']}", "", f"Command: `{header['command']}`", "",
             f"Device: {header['device']}", "", f"Build: {header['build']}", "",
             f"Model: {header['model']}", ""]
    if results.ratios:
        lines += ["#### Ratios (read against PERFORMANCE.md's targets)", "",
                  "| part | ratio | value | target |", "| --- | --- | --- | --- |"]
        for r in results.ratios:
            target = f"{r.target} ({r.verdict})" if r.target else ""
            lines.append(f"| {r.part} | {r.name} | {fmt(r.value, 3)} | {target} |")
        lines.append("")
    lines += ["#### Figures: median (min-max) over paired repetitions", ""]
    parts = [p for p in PARTS if any(m.part == p for m in results.measures)]
    parts += sorted({m.part for m in results.measures} - set(parts))
    for part in parts:
        lines += [f"**{part}**", "", *part_table([m for m in results.measures if m.part == part]), ""]
    notes = [m for m in results.measures if m.note]
    if notes:
        lines += ["Definitions:", ""]
        lines += [f"- {m.part} / {m.name} ({m.system}): {m.note}" for m in _unique_notes(notes)]
        lines.append("")
    if results.notes:
        lines += ["Notes from this run:", "", *[f"- {n}" for n in results.notes], ""]
    return "\n".join(lines)


def _unique_notes(measures: list[Measure]) -> list[Measure]:
    seen: dict[tuple[str, str], Measure] = {}
    for m in measures:
        seen.setdefault((m.part, re.sub(r"@\d+$", "@N", m.name) + m.note), m)
    out = []
    for m in seen.values():
        m = Measure(m.part, re.sub(r"@\d+$", "@N", m.name), m.system, m.unit, m.runs, note=m.note)
        out.append(m)
    return out
