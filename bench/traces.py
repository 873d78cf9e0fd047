"""What one wave of concurrent requests did: per-request timelines and the figures drawn from them."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any

from bench.core import Measure, percentile


@dataclass
class Trace:
    """One request: when it was sent, when each piece arrived (with the tokens generated so far)."""

    start: float
    end: float = math.nan
    tokens: int = 0  # completion tokens, from usage
    prompt_tokens: int = 0
    cached_tokens: int = 0
    marks: list[tuple[float, int]] = field(default_factory=list)  # (time, tokens so far)

    @property
    def ttft(self) -> float:
        """Time to the first piece of text (to the end, for a request whose one token had none)."""
        if self.marks:
            return self.marks[0][0] - self.start
        return self.end - self.start if self.tokens else math.nan

    def gaps(self) -> list[float]:
        """Inter-token latencies: time between pieces, divided by the tokens each piece carries."""
        out = []
        for (t0, n0), (t1, n1) in itertools.pairwise(self.marks):
            if n1 > n0:
                out.extend([(t1 - t0) / (n1 - n0)] * (n1 - n0))
        return out

    def tokens_at(self, t: float) -> int:
        count = 0
        for when, n in self.marks:
            if when > t:
                break
            count = n
        return count


@dataclass
class Wave:
    """N requests sent together; `wall` runs from the first send to the last finish."""

    traces: list[Trace]
    wall: float

    @property
    def tokens(self) -> int:
        return sum(t.tokens for t in self.traces)

    @property
    def aggregate(self) -> float:
        """Completion tokens (from usage) per second of wall time, prefill included."""
        return self.tokens / self.wall if self.wall > 0 else math.nan

    def ttfts(self) -> list[float]:
        return [t.ttft for t in self.traces if math.isfinite(t.ttft)]

    def gaps(self) -> list[float]:
        return [g for t in self.traces for g in t.gaps()]

    def decode_rate(self) -> float:
        """Generation tokens/s while every request is decoding: from the last first token to the
        first finish. Comparable with llama-batched-bench's speed_tg; NaN when the window is empty."""
        if not self.traces or any(not t.marks for t in self.traces):
            return math.nan
        lo = max(t.marks[0][0] for t in self.traces)
        hi = min(t.marks[-1][0] for t in self.traces)
        if hi <= lo:
            return math.nan
        return sum(t.tokens_at(hi) - t.tokens_at(lo) for t in self.traces) / (hi - lo)


def wave_measures(part: str, n: int, system: str, waves: list[Wave], params: dict[str, Any],
                  decode: bool = False) -> dict[str, Measure]:
    """The figures of one system at `n` concurrent requests, one run per wave (repetition):
    aggregate tok/s, TTFT p50/p99 and inter-token latency p50/p99 in ms (percentiles within a
    wave, median across waves), and with `decode` the all-decoding generation rate."""
    figures: dict[str, tuple[str, list[float]]] = {
        f"aggregate@{n}": ("tok/s", [w.aggregate for w in waves]),
        f"ttft p50@{n}": ("ms", [percentile(w.ttfts(), 50) * 1e3 for w in waves]),
        f"ttft p99@{n}": ("ms", [percentile(w.ttfts(), 99) * 1e3 for w in waves]),
        f"itl p50@{n}": ("ms", [percentile(w.gaps(), 50) * 1e3 for w in waves]),
        f"itl p99@{n}": ("ms", [percentile(w.gaps(), 99) * 1e3 for w in waves]),
    }
    if decode:
        figures[f"decode@{n}"] = ("tok/s", [w.decode_rate() for w in waves])
    tokens = [t.tokens for w in waves for t in w.traces]
    prompt = [t.prompt_tokens for w in waves for t in w.traces]
    extra = {"clients": n, "completion_tokens": [min(tokens), max(tokens)],
             "prompt_tokens": [min(prompt), max(prompt)]} if tokens else {"clients": n}
    return {name: Measure(part, name, system, unit, [v for v in runs if math.isfinite(v)],
                          {**params, **extra}) for name, (unit, runs) in figures.items()}
