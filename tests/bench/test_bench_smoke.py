"""The bench suite's CI smoke run: `python -m bench --quick` on the real test model works, and its
numbers are sane (finite, non-zero, in the right units). No timing is ever asserted."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from support.bench_cli import run_bench

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / "bench" / "build" / "bin"
UNITS = {"tok/s", "ms", "us/token", "inputs/s", "GB/s", "MB/s", "MB", "MiB", "s"}
# differences and tick-counted CPU times: noise can make them zero or negative
SIGNED = ("host overhead", "event-loop cpu per extra token", "event-loop user cpu", "event-loop system cpu",
          "step ",  # the engine's per-step split: a part under a microsecond counts as 0
          "rpc cost per step")  # split minus local: noise on a busy machine can make it negative

pytestmark = pytest.mark.slow
ONE = "1 thread each, no repack"  # the scale part's RPC figures without core contention


def built(tool: str) -> bool:
    return (TOOLS / tool).exists()


@pytest.fixture(scope="module")
def quick(smollm2_path: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One quick run of the whole suite; missing llama.cpp tools are not built (minutes) unless
    BENCH_BUILD_TOOLS=1, and their comparisons are then skipped by the suite."""
    out = tmp_path_factory.mktemp("bench-results")
    args = ["--quick", "--model", str(smollm2_path), "--out", str(out)]
    if os.environ.get("BENCH_BUILD_TOOLS") != "1":
        args.append("--no-build")
    proc = run_bench(args, timeout=900)
    jsonl = out / "results.jsonl"
    records = [json.loads(line) for line in jsonl.read_text().splitlines()] if jsonl.exists() else []
    return {"proc": proc, "out": out, "records": records}


def measures(quick: dict[str, Any]) -> dict[tuple[str, str, str], dict[str, Any]]:
    return {(r["part"], r["name"], r["system"]): r for r in quick["records"] if r["kind"] == "measure"}


def ratios(quick: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["name"]: r for r in quick["records"] if r["kind"] == "ratio"}


def test_quick_suite_runs_every_part(quick: dict[str, Any]) -> None:
    proc = quick["proc"]
    assert proc.returncode == 0, proc.stderr[-3000:]
    failed = [r["text"] for r in quick["records"] if r["kind"] == "note" and "FAILED" in r["text"]]
    assert not failed
    assert {r["part"] for r in quick["records"] if r["kind"] == "measure"} >= {
        "decode", "roofline", "concurrency", "determinism", "http", "ceiling", "prefix", "embeddings", "load",
        "scale", "spec"}


def test_every_figure_is_finite_positive_and_in_known_units(quick: dict[str, Any]) -> None:
    found = measures(quick)
    assert found
    for key, m in found.items():
        assert m["unit"] in UNITS, key
        assert m["n"] >= 1 and len(m["runs"]) == m["n"], key
        assert m["median"] is not None and math.isfinite(m["median"]), key
        assert m["min"] <= m["median"] <= m["max"], key
        if not m["name"].startswith(SIGNED):
            assert m["median"] > 0, key


def test_mr_figures_are_there(quick: dict[str, Any]) -> None:
    found = measures(quick)
    for key in [("decode", "tg16", "mr-engine"), ("decode", "pp64", "mr-engine"),
                ("roofline", "host copy bandwidth", "host"), ("roofline", "bandwidth ceiling", "host"),
                ("concurrency", "aggregate@1", "mr-engine"), ("concurrency", "aggregate@2", "mr-engine"),
                ("concurrency", "decode@2", "mr-engine"), ("concurrency", "ttft p99@2", "mr-engine"),
                ("concurrency", "itl p50@2", "mr-engine"),
                ("determinism", "pp64", "mr-engine"), ("determinism", "pp64", "mr-engine deterministic"),
                ("determinism", "aggregate@2", "mr-engine"),
                ("determinism", "aggregate@2", "mr-engine deterministic"),
                ("http", "aggregate@2", "mr-serve"), ("http", "ttft p50@1", "mr-serve"),
                ("http", "event-loop cpu per extra token", "mr-serve"), ("http", "peak RSS", "mr-serve"),
                ("ceiling", "aggregate@4", "mr-serve"), ("ceiling", "event-loop cpu per token@4", "mr-serve"),
                ("ceiling", "client cpu per token@4", "mr-serve"),
                ("ceiling", "aggregate@4", "mr-serve (asyncio, asgi path)"),
                ("prefix", "ttft cold", "mr-engine"), ("prefix", "ttft cached", "mr-engine"),
                ("prefix", "ttft cached", "mr-serve"), ("embeddings", "embed", "mr-engine"),
                ("load", "model load", "mr-engine"), ("load", "peak RSS", "mr-engine"),
                ("pull", "pull", "mr-store"), ("pull", "pull", "mr-store-ollama"),
                ("scale", f"tg16 local ({ONE})", "mr-engine"),
                ("scale", f"tg16 split 1+2 ({ONE})", "mr-engine"),
                ("scale", f"rpc cost per step ({ONE})", "mr-engine"),
                ("spec", "code-edit@2", "mr-serve spec auto"),
                ("spec", "free-writing@1", "mr-serve spec off")]:
        assert key in found, key
    split = found[("scale", f"tg16 split 1+2 ({ONE})", "mr-engine")]["params"]["placement"]
    assert len(split) == 3 and all("RPC" in p for p in split[1:])  # this process and two workers
    if shutil.which("haproxy") or os.path.exists("/usr/sbin/haproxy"):
        for name in ("one server", "one server behind haproxy", "two replicas behind haproxy"):
            assert ("scale", f"aggregate@2 {name}", "mr-serve") in found, name
    assert found[("concurrency", "aggregate@2", "mr-engine")]["params"]["completion_tokens"] == [8, 8]
    low, high = found[("prefix", "ttft cached", "mr-engine")]["params"]["cached_tokens"]
    assert 0 <= low <= high  # how many were reused is the engine's business (tests/native)


@pytest.mark.parametrize("tool,key,ratio_name", [
    ("llama-bench", ("decode", "tg16", "llama-bench"), "mr-engine / llama-bench tg16"),
    ("llama-batched-bench", ("concurrency", "decode@2", "llama-batched-bench"),
     "mr-engine / batched-bench decode@2"),
    ("llama-server", ("http", "aggregate@2", "llama-server"), "mr-serve / llama-server aggregate@2"),
    ("llama-embedding", ("embeddings", "embed", "llama-embedding"), "mr-engine / llama-embedding inputs/s"),
])
def test_yardsticks_side_by_side_when_built(quick: dict[str, Any], tool: str, key: tuple[str, str, str],
                                            ratio_name: str) -> None:
    if not built(tool):
        pytest.skip(f"{tool} is not built (python bench/llama_tools.py {tool})")
    assert key in measures(quick)
    assert ratio_name in ratios(quick)


def test_every_ratio_is_finite(quick: dict[str, Any]) -> None:
    found = ratios(quick)
    assert "mr-engine ttft cached / cold" in found
    for name, r in found.items():
        assert r["value"] is not None and math.isfinite(r["value"]), name
        assert r["value"] > 0 or "CPU" in name, name  # a CPU time in ticks may round to zero
        assert r["verdict"] in ("", "meets", "misses"), name


def test_records_say_where_they_were_measured(quick: dict[str, Any]) -> None:
    for r in quick["records"]:
        device = r["device"]
        assert device["cpu"]["name"] and device["cpu"]["usable_cores"] >= 1
        assert device["runs_on"]
        assert "CPU" in device["build"]["system_info"] or device["build"]["gpu_backends"]
        assert r["model"]["name"].endswith(".gguf") and r["settings"]["quick"] is True


def test_summary_and_plots_are_written(quick: dict[str, Any]) -> None:
    summary = (quick["out"] / "summary.md").read_text()
    assert "python -m bench --quick" in summary
    if built("llama-bench"):  # ratios need the yardsticks, not built in CI
        assert "#### Ratios" in summary and "| decode |" in summary
    assert "| figure | unit |" in summary
    pytest.importorskip("matplotlib")
    for name in ("throughput.png", "latency.png", "single.png"):
        assert (quick["out"] / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_decode_script_still_prints_its_ratio(smollm2_path: Path) -> None:
    if not built("llama-bench"):
        pytest.skip("llama-bench is not built")
    proc = subprocess.run([sys.executable, "bench/decode.py", "--model", str(smollm2_path), "--reps", "1",
                           "--tokens", "8", "--json"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout)
    assert result["mr_tg_tps"] > 0 and result["llama_bench_tg_tps"] > 0 and math.isfinite(result["ratio"])
