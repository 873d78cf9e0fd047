"""The vocabulary of every part: measures, ratios, paired A/B runs, deadlines, percentiles."""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), linear between closest ranks; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    lo, hi = math.floor(rank), math.ceil(rank)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (rank - lo)


@dataclass
class Measure:
    """One figure of one system, with every run behind its median."""

    part: str  # "decode", "concurrency", ...
    name: str  # "tg128", "aggregate@8", ...
    system: str  # "mr-engine", "llama-bench", "mr-serve", "llama-server", ...
    unit: str  # "tok/s", "ms", "us/token", ...
    runs: list[float]
    params: dict[str, Any] = field(default_factory=dict)
    note: str = ""

    @property
    def value(self) -> float:
        return median(self.runs)

    @property
    def spread(self) -> tuple[float, float]:
        return (min(self.runs), max(self.runs)) if self.runs else (math.nan, math.nan)

    @property
    def key(self) -> str:
        return f"{self.part}/{self.name}/{self.system}"

    def record(self) -> dict[str, Any]:
        lo, hi = self.spread
        return {"kind": "measure", "part": self.part, "name": self.name, "system": self.system,
                "unit": self.unit, "median": self.value, "min": lo, "max": hi, "n": len(self.runs),
                "runs": self.runs, "params": self.params, "note": self.note}


@dataclass
class Ratio:
    """A over B for one figure, read against its PERFORMANCE.md target."""

    part: str
    name: str  # "mr-engine / llama-bench tg128"
    value: float
    target: str = ""  # ">= 0.97", "<= 0.25", "" for information only
    unit: str = "x"

    @property
    def verdict(self) -> str:
        if not self.target or not math.isfinite(self.value):
            return ""
        op, bound = self.target.split()
        ok = self.value >= float(bound) if op == ">=" else self.value <= float(bound)
        return "meets" if ok else "misses"

    def record(self) -> dict[str, Any]:
        return {"kind": "ratio", "part": self.part, "name": self.name, "value": self.value,
                "target": self.target, "verdict": self.verdict}


def ratio(part: str, name: str, a: Measure, b: Measure, target: str = "") -> Ratio:
    """median(a) / median(b); NaN when b is zero or missing."""
    num, den = a.value, b.value
    value = num / den if den and math.isfinite(den) and math.isfinite(num) else math.nan
    return Ratio(part, name, value, target)


class Deadline:
    """A part's time budget: loops check `passed` before starting another repetition."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.end = time.monotonic() + seconds

    @property
    def passed(self) -> bool:
        return time.monotonic() >= self.end

    @property
    def left(self) -> float:
        return max(0.0, self.end - time.monotonic())


def paired(runs: Sequence[Callable[[], Any]], reps: int, deadline: Deadline,
           before: Callable[[], object] | None = None, rotate: bool = False) -> list[list[Any]]:
    """Run each callable once per repetition (A B A B ...), so drift cancels.

    With `rotate` (for runs that do not depend on each other's order), each repetition starts one
    further along (A B, B A, ...), so no side always runs first: on these VMs the first run after
    the quiet wait can get a different share of the host than the second. At least one repetition
    always runs; later ones stop when the deadline has passed. `before` runs at the start of
    every repetition (the suite samples the machine's load there)."""
    results: list[list[Any]] = [[] for _ in runs]
    for rep in range(max(1, reps)):
        if rep and deadline.passed:
            break
        if before is not None:
            before()
        for i in rotation(len(runs), rep if rotate else 0):
            results[i].append(runs[i]())
    return results


def rotation(n: int, rep: int) -> list[int]:
    """0..n-1 starting at rep mod n: the order of the n sides in repetition `rep`."""
    start = rep % n if n else 0
    return [(start + i) % n for i in range(n)]


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out
