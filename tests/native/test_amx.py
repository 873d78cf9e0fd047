"""ggml's AMX backend: the tile-config fix (vendor/patches/0001) and AMX results vs plain kernels.

GCC 12 dropped the rows/colsb stores of ggml_tile_config_init() because ldtilecfg reads the config
through a pointer the builtin does not declare as read; the first tile instruction then faulted
(SIGILL) on every Sapphire Rapids machine. The disassembly check runs on any x86 host whose
compiler targets Sapphire Rapids, so an AMD machine cannot bring the bug back unseen; the runtime
check needs a CPU with AMX.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from mr import _native

VENDOR = Path(__file__).resolve().parents[2] / "vendor" / "llama.cpp"
MMQ = VENDOR / "ggml" / "src" / "ggml-cpu" / "amx" / "mmq.cpp"
PATCH = VENDOR.parent / "patches" / "0001-amx-tile-config-stores.patch"
CONFIG_BYTES = 64  # palette_id, start_row, reserved[14], colsb[16] (u16), rows[16] (u8)


def has_amx() -> bool:
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    return "amx_int8" in flags and "AMX_INT8 = 1" in _native.system_info()


def compile_to_asm(source: Path, out: Path) -> str:
    cxx = shutil.which("g++")
    if cxx is None:
        pytest.skip("g++ is not installed")
    if not MMQ.exists():
        pytest.skip("vendor/llama.cpp is not fetched")
    ggml = VENDOR / "ggml"
    cmd = [cxx, "-std=c++17", "-O3", "-march=sapphirerapids", "-DNDEBUG", "-S", "-o", str(out),
           f"-I{ggml / 'include'}", f"-I{ggml / 'src'}", f"-I{ggml / 'src' / 'ggml-cpu'}",
           f"-I{MMQ.parent}", "-x", "c++", str(source)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if result.returncode != 0 and "sapphirerapids" in result.stderr:
        pytest.skip(f"this compiler cannot target Sapphire Rapids: {result.stderr.strip()[:200]}")
    assert result.returncode == 0, result.stderr[-2000:]
    return out.read_text()


STORE = re.compile(r"^\s*(v?mov\w*)\s+(%\w+|\$-?\w+),\s*(-?\d*)\(%(rsp|rbp)\)")
LOAD_CONST = re.compile(r"^\s*v?mov\w*\s+\.LC\w+\(%rip\),\s*(%\w+)")


def tile_config_stores(asm: str) -> list[tuple[str, bool]]:
    """For each ldtilecfg: (its operand, whether rows[] and colsb[] were stored before it).

    Walks back from the ldtilecfg to the thread-local `done` check of ggml_tile_config_init and
    collects stack stores into the 64-byte config. A store into the colsb range and one into the
    rows range must be there, or a whole-config store of a constant loaded from memory."""
    lines = asm.splitlines()
    found = []
    for i, line in enumerate(lines):
        m = re.match(r"^\s*ldtilecfg\s+(-?\d*)\(%(rsp|rbp)\)", line)
        if not m:
            continue
        base, reg = int(m.group(1) or 0), m.group(2)
        consts: set[str] = set()
        offsets: set[int] = set()
        for prev in reversed(lines[max(0, i - 80):i]):
            if "ggml_tile_config_init" in prev and "done" in prev:
                break
            store = STORE.match(prev)
            if store and store.group(4) == reg:
                offset = int(store.group(3) or 0) - base
                if offset == 0 and store.group(2) in consts:
                    offsets.update({16, 48})  # the whole config from a constant
                offsets.add(offset)
            load = LOAD_CONST.match(prev)
            if load:
                consts.add(load.group(1))
        colsb = any(16 <= o < 48 for o in offsets)
        rows = any(48 <= o < CONFIG_BYTES for o in offsets)
        found.append((line.strip(), colsb and rows))
    return found


def test_tile_config_stores_reach_ldtilecfg(tmp_path: Path) -> None:
    """The patched mmq.cpp, compiled for Sapphire Rapids, stores the tile shapes it loads."""
    asm = compile_to_asm(MMQ, tmp_path / "mmq.s")
    configs = tile_config_stores(asm)
    assert configs, "no ldtilecfg in the AMX kernels: the check no longer sees the tile config"
    assert all(ok for _, ok in configs), f"tile config loaded without its rows/colsb stores: {configs}"


@pytest.mark.slow
def test_the_check_catches_the_unpatched_source(tmp_path: Path) -> None:
    """The same check on mmq.cpp without mr's patch: with GCC 12 it must see the dropped stores."""
    source = MMQ.read_text()
    barrier = next(line for line in PATCH.read_text().splitlines() if line.startswith("+") and "asm" in line)
    unpatched = tmp_path / "mmq_unpatched.cpp"
    unpatched.write_text(source.replace(barrier[1:] + "\n", ""))
    assert unpatched.read_text() != source, "the patch's barrier line is not in the fetched tree"
    configs = tile_config_stores(compile_to_asm(unpatched, tmp_path / "unpatched.s"))
    if all(ok for _, ok in configs):
        pytest.skip("this compiler keeps the stores even without the barrier (not GCC 12's bug)")
    assert not all(ok for _, ok in configs)


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.mark.slow
@pytest.mark.skipif(not has_amx(), reason="needs a CPU with AMX (amx_int8) and a build that uses it")
def test_amx_matmuls_agree_with_the_plain_kernels(smollm2_path: Path) -> None:
    """Weights repacked into AMX tiles give what the unrepacked weights give: prompts of many
    tokens (tile kernels) and single-token decode steps (VNNI kernels on the AMX layout)."""
    from mr.engine import LLM, EngineOptions, SamplingOptions

    texts = ["The cheetah is the fastest land animal, reaching speeds of 100 km/h in short bursts.",
             "def add(a, b):\n    return a + b\n" * 4, "Paris is the capital and largest city of France."]
    runs = {}
    for repack in (True, False):
        llm = LLM(smollm2_path, EngineOptions(n_ctx=512, n_slots=1, repack=repack))
        try:
            buffers = llm.model.weight_buffers
            assert ("AMX" in buffers) is repack, buffers
            stream = llm.generate(texts[0], SamplingOptions(temperature=0), max_tokens=8, logprobs=0)
            text = stream.text()
            runs[repack] = (llm.embed(texts), [lp.logprob for lp in stream.logprobs], text)
        finally:
            llm.close()
    (emb_amx, lp_amx, _), (emb_plain, lp_plain, _) = runs[True], runs[False]
    assert cosine(emb_amx, emb_plain).min() > 0.99
    # The first token's log-probability comes from the same prompt through both kernel sets.
    assert abs(lp_amx[0] - lp_plain[0]) < 0.3
