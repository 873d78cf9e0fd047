"""The bench suite's arithmetic, without a model: percentiles, pairing, traces, ratios, reports."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from bench.core import Deadline, Measure, Ratio, paired, percentile, ratio, rotation
from bench.device import cpu_class
from bench.report import markdown
from bench.results import Results
from bench.traces import Trace, Wave, wave_measures


def test_percentile_interpolates_and_handles_empty() -> None:
    assert percentile([3, 1, 2], 50) == 2
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile([10], 99) == 10
    assert math.isclose(percentile(list(range(101)), 99), 99)
    assert math.isnan(percentile([], 50))


def test_paired_alternates_and_stops_at_the_deadline() -> None:
    order: list[str] = []
    out = paired([lambda: order.append("A") or 1, lambda: order.append("B") or 2], 3, Deadline(60))
    assert order == ["A", "B"] * 3 and out == [[1, 1, 1], [2, 2, 2]]
    order.clear()
    assert paired([lambda: order.append("A")], 5, Deadline(0)) == [[None]]  # at least one repetition


def test_rotated_pairs_take_turns_going_first() -> None:
    order: list[str] = []
    sides = [lambda: order.append("A") or 1, lambda: order.append("B") or 2]
    out = paired(sides, 3, Deadline(60), rotate=True)
    assert order == ["A", "B", "B", "A", "A", "B"]
    assert out == [[1, 1, 1], [2, 2, 2]]  # results stay with their side
    assert rotation(3, 1) == [1, 2, 0] and rotation(3, 3) == [0, 1, 2]


def test_ratio_verdicts() -> None:
    a = Measure("p", "x", "a", "tok/s", [90, 100, 110])
    b = Measure("p", "x", "b", "tok/s", [100])
    assert ratio("p", "a/b", a, b, ">= 0.97").verdict == "meets"
    assert ratio("p", "a/b", a, b, "<= 0.25").verdict == "misses"
    assert ratio("p", "a/b", a, b).verdict == ""
    assert math.isnan(ratio("p", "a/0", a, Measure("p", "x", "z", "tok/s", [0.0])).value)
    assert Ratio("p", "nan", math.nan, ">= 1").verdict == ""


def test_trace_latencies_and_decode_window() -> None:
    # two requests, one token every 10 ms after their first; the second starts 5 ms later
    first = Trace(start=0.0, end=0.1, tokens=10, marks=[(0.01 * (i + 1), i + 1) for i in range(10)])
    second = Trace(start=0.0, end=0.105, tokens=10,
                   marks=[(0.005 + 0.01 * (i + 1), i + 1) for i in range(10)])
    assert first.ttft == pytest.approx(0.01) and second.ttft == pytest.approx(0.015)
    assert first.gaps() == pytest.approx([0.01] * 9)
    merged = Trace(start=0.0, tokens=3, marks=[(0.01, 1), (0.03, 3)])  # one piece carrying two tokens
    assert merged.gaps() == pytest.approx([0.01, 0.01])
    wave = Wave([first, second], wall=0.105)
    assert wave.aggregate == pytest.approx(20 / 0.105)
    assert wave.decode_rate() == pytest.approx(200, rel=0.15)  # two streams at 100 tok/s each
    assert math.isnan(Wave([Trace(start=0.0)], 1.0).decode_rate())
    figures = wave_measures("p", 2, "sys", [wave], {}, decode=True)
    assert figures["ttft p50@2"].value == pytest.approx(12.5) and figures["ttft p50@2"].unit == "ms"
    assert set(figures) == {"aggregate@2", "ttft p50@2", "ttft p99@2", "itl p50@2", "itl p99@2", "decode@2"}


def test_one_token_request_without_text_still_has_a_ttft() -> None:
    assert Trace(start=1.0, end=1.5, tokens=1).ttft == pytest.approx(0.5)
    assert math.isnan(Trace(start=1.0, end=1.5, tokens=0).ttft)


def test_results_are_strict_json_lines_and_the_summary_pivots_systems(tmp_path: Path) -> None:
    res = Results(tmp_path, {"device": {"runs_on": "cpu"}}, echo=False)
    a = res.add(Measure("decode", "tg128", "mr-engine", "tok/s", [100.0, 102.0]))
    b = res.add(Measure("decode", "tg128", "llama-bench", "tok/s", [101.0]))
    res.add(Measure("decode", "odd", "mr-engine", "tok/s", []))  # no runs: NaN median
    res.add_ratio(ratio("decode", "mr / llama-bench", a, b, ">= 0.97"))
    res.note("decode", "a note")
    lines = (tmp_path / "results.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]  # strict: NaN became null
    assert [r["kind"] for r in records] == ["measure", "measure", "measure", "ratio", "note"]
    assert records[2]["median"] is None and records[0]["device"] == {"runs_on": "cpu"}
    header = {"title": "t", "command": "python -m bench", "device": "d", "build": "b", "model": "m"}
    text = markdown(res, header)
    assert "| decode | mr / llama-bench | 1.000 | >= 0.97 (meets) |" in text
    assert "| figure | unit | mr-engine | llama-bench |" in text
    assert "| tg128 | tok/s | 101 (100-102) | 101 |" in text
    assert "- decode: a note" in text


def test_a_built_tool_still_goes_through_the_build_system(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tool left from before the vendor tree was re-extracted (a new patch) must be rebuilt,
    or the bench would compare mr with kernels it no longer runs. The build system decides:
    the command runs even when the binary exists (ninja makes it a no-op when nothing changed)."""
    from bench import llama_runs, llama_tools

    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "llama-bench").write_text("")
    (tmp_path / "build.ninja").write_text("")
    calls: list[list[str]] = []
    monkeypatch.setattr(llama_tools, "BUILD", tmp_path)
    monkeypatch.setattr(llama_runs, "BUILD", tmp_path)
    monkeypatch.setattr(llama_tools.subprocess, "run", lambda cmd, **kw: calls.append(list(cmd)))
    assert llama_runs.available("llama-bench") == tmp_path / "bin" / "llama-bench"
    assert calls == [["cmake", "--build", str(tmp_path), "--target", "llama-bench"]]
    calls.clear()
    assert llama_runs.available("llama-bench", build=False) == tmp_path / "bin" / "llama-bench"
    assert calls == []


@pytest.mark.parametrize("fields,isa,expected", [
    (("AuthenticAMD", "25", "1"), ["avx2"], "AMD Zen 3, AVX2"),
    (("AuthenticAMD", "25", "17"), ["avx2", "avx512f"], "AMD Zen 4, AVX-512"),
    (("GenuineIntel", "6", "143"), ["avx2", "avx512f", "amx_int8"], "Intel, AVX-512 + AMX"),
    (("AuthenticAMD", "99", "1"), ["avx2"], "AMD family 99 model 1, AVX2"),
    (("", "", ""), ["asimd"], "NEON"),
])
def test_the_bench_record_names_the_cpu_class(fields: tuple[str, str, str], isa: list[str],
                                              expected: str) -> None:
    assert cpu_class(*fields, isa, "x86_64") == expected
