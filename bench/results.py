"""Collects measures and ratios as they come: printed at once, appended to results.jsonl."""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any

from bench.core import Measure, Ratio


class Results:
    def __init__(self, out: Path, common: dict[str, Any], echo: bool = True) -> None:
        self.out = out
        self.common = common  # device, build, model, settings: stored in every record
        self.measures: list[Measure] = []
        self.ratios: list[Ratio] = []
        self.notes: list[str] = []
        self.echo = echo
        out.mkdir(parents=True, exist_ok=True)
        self.jsonl = out / "results.jsonl"

    def add(self, measure: Measure) -> Measure:
        self.measures.append(measure)
        self._write(measure.record())
        lo, hi = measure.spread
        self._say(f"  {measure.part:<12} {measure.name:<22} {measure.system:<18} {_fmt(measure.value):>10} "
                  f"{measure.unit:<9} [{_fmt(lo)} .. {_fmt(hi)}] n={len(measure.runs)}")
        return measure

    def add_ratio(self, r: Ratio) -> Ratio:
        self.ratios.append(r)
        self._write(r.record())
        target = f"(target {r.target}: {r.verdict})" if r.target else ""
        self._say(f"  {r.part:<12} ratio {r.name:<48} {_fmt(r.value, 3):>8} {target}")
        return r

    def note(self, part: str, text: str) -> None:
        self.notes.append(f"{part}: {text}")
        self._write({"kind": "note", "part": part, "text": text})
        self._say(f"  {part:<12} note: {text}")

    def find(self, part: str, name: str, system: str) -> Measure | None:
        for m in self.measures:
            if (m.part, m.name, m.system) == (part, name, system):
                return m
        return None

    def _write(self, record: dict[str, Any]) -> None:
        record = {**record, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **self.common}
        with self.jsonl.open("a") as f:
            f.write(json.dumps(_clean(record), default=_json_default, allow_nan=False) + "\n")

    def _say(self, line: str) -> None:
        if self.echo:
            print(line, file=sys.stderr, flush=True)


def _fmt(value: float, digits: int | None = None) -> str:
    if not math.isfinite(value):
        return "n/a"
    if digits is not None:
        return f"{value:.{digits}f}"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def fmt(value: float, digits: int | None = None) -> str:
    return _fmt(value, digits)


def _clean(value: Any) -> Any:
    """NaN and infinities become null: the file stays strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def _json_default(value: object) -> object:
    return str(value)
