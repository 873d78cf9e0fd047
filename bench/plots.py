"""PNG plots of a run (matplotlib, Agg): throughput and latency against clients, single stream."""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

from bench.core import Measure

Series = dict[str, list[tuple[int, float, float, float]]]  # label -> [(clients, median, lo, hi)]


def _series(measures: list[Measure], part: str, figure: str, label: str = "{system}") -> Series:
    out: Series = defaultdict(list)
    for m in measures:
        match = re.fullmatch(re.escape(figure) + r"@(\d+)", m.name)
        if m.part == part and match and m.runs:
            out[label.format(system=m.system)].append((int(match.group(1)), m.value, *m.spread))
    return {k: sorted(v) for k, v in out.items()}


def _lines(ax, series: Series, style: str = "-o") -> None:  # ax: matplotlib Axes
    from matplotlib.ticker import ScalarFormatter

    levels: set[int] = set()
    for label, points in series.items():
        xs, ys, lo, hi = zip(*points, strict=True)
        levels.update(xs)
        ax.errorbar(xs, ys, yerr=[[y - a for y, a in zip(ys, lo, strict=True)],
                                  [b - y for y, b in zip(ys, hi, strict=True)]],
                    fmt=style, capsize=3, label=label)
    ax.set_xscale("log", base=2)
    ax.set_xticks(sorted(levels))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(ScalarFormatter())
    ax.minorticks_off()


def write(measures: list[Measure], out: Path, title: str) -> list[Path]:
    """Write the plots there is data for; returns their paths (none without matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    written = []
    throughput = {**_series(measures, "concurrency", "aggregate", "{system} aggregate (engine)"),
                  **_series(measures, "concurrency", "decode", "{system} decode (engine)"),
                  **_series(measures, "http", "aggregate", "{system} aggregate (HTTP)")}
    if throughput:
        fig, ax = plt.subplots(figsize=(8, 5))
        _lines(ax, throughput)
        ax.set(xlabel="concurrent requests", ylabel="tokens/s", title=f"Throughput\n{title}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        written.append(_save(fig, out / "throughput.png"))
        plt.close(fig)
    latency = [(q, {**_series(measures, "http", q), **_series(measures, "concurrency", q,
                                                                 "{system} (engine)")})
               for q in ("ttft p50", "ttft p99", "itl p50", "itl p99")]
    if any(s for _, s in latency):
        fig, axes = plt.subplots(2, 2, figsize=(11, 8), sharex=True)
        for ax, (q, series) in zip(axes.flat, latency, strict=True):
            _lines(ax, series)
            ax.set(title=q, ylabel="ms", xlabel="concurrent requests")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        fig.suptitle(f"Latency\n{title}", fontsize=10)
        written.append(_save(fig, out / "latency.png"))
        plt.close(fig)
    singles = [m for m in measures if m.part in ("decode", "prefix") and m.unit in ("tok/s", "ms") and m.runs]
    if singles:
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
        for ax, part, unit in ((axes[0], "decode", "tok/s"), (axes[1], "prefix", "ms")):
            bars = [m for m in singles if m.part == part]
            ax.barh([f"{m.name} {m.system}" for m in bars], [m.value for m in bars],
                    xerr=[[m.value - m.spread[0] for m in bars], [m.spread[1] - m.value for m in bars]],
                    color=["tab:orange" if m.system.startswith("mr") else "tab:blue" for m in bars])
            ax.set(title="single stream" if part == "decode" else "prefix cache TTFT", xlabel=unit)
            ax.grid(alpha=0.3, axis="x")
        fig.suptitle(title, fontsize=9)
        written.append(_save(fig, out / "single.png"))
        plt.close(fig)
    return written


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path
