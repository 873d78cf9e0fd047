"""What the numbers were measured on: accelerators, CPU, memory, and mr's build flags."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from pathlib import Path
from typing import Any


def nvidia_gpus() -> list[dict[str, Any]]:
    """One dict per NVIDIA GPU (name, memory, driver, compute capability); [] without nvidia-smi."""
    if not shutil.which("nvidia-smi"):
        return []
    query = "index,name,memory.total,driver_version,compute_cap"
    try:
        out = subprocess.run(["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=20, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    gpus = []
    for line in out.strip().splitlines():
        index, name, memory, driver, cap = (part.strip() for part in line.split(","))
        gpus.append({"index": int(index), "name": name, "memory_mib": int(float(memory)),
                     "driver": driver, "compute_capability": cap})
    return gpus


def gpu_memory_used_mib(pid: int) -> float | None:
    """VRAM held by process `pid` (nvidia-smi), or None where that cannot be read."""
    if not shutil.which("nvidia-smi"):
        return None
    try:
        out = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,used_memory",
                              "--format=csv,noheader,nounits"], capture_output=True, text=True,
                             timeout=20, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    used = [float(m) for p, m in (line.split(",") for line in out.strip().splitlines() if "," in line)
            if int(p) == pid]
    return sum(used) if used else None


def cpu() -> dict[str, Any]:
    name = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    elif platform.system() == "Darwin":
        name = _sysctl("machdep.cpu.brand_string") or name
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    fields = _cpuinfo_fields()
    isa = cpu_isa()
    return {"name": name, "class": cpu_class(fields.get("vendor_id", ""), fields.get("cpu family", ""),
                                             fields.get("model", ""), isa, platform.machine()),
            "logical_cores": os.cpu_count(), "usable_cores": usable, "isa": isa,
            "memory_gib": round(memory_bytes() / 2**30, 1)}


def _cpuinfo_fields() -> dict[str, str]:
    """The first processor's `key : value` lines of /proc/cpuinfo."""
    cpuinfo = Path("/proc/cpuinfo")
    fields: dict[str, str] = {}
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if not line.strip():
                break
            key, sep, value = line.partition(":")
            if sep:
                fields.setdefault(key.strip(), value.strip())
    return fields


# AMD's family 0x19 / 0x1A model ranges by core generation (AMD's processor programming references).
_AMD_ZEN = {25: [(range(0x00, 0x10), "Zen 3"), (range(0x20, 0x60), "Zen 3"), (range(0x10, 0x20), "Zen 4"),
                 (range(0x60, 0x80), "Zen 4"), (range(0xA0, 0xB0), "Zen 4")],
            26: [(range(0x00, 0x100), "Zen 5")],
            23: [(range(0x00, 0x30), "Zen/Zen+"), (range(0x30, 0x100), "Zen 2")]}


def cpu_class(vendor: str, family: str, model: str, isa: list[str], machine: str) -> str:
    """The CPU's class for benchmark records, e.g. "AMD EPYC Zen 3, AVX2" or "Intel, AVX-512 + AMX":
    the generation where /proc/cpuinfo says it, and the widest vector and matrix units."""
    units = ("AVX-512 + AMX" if "amx_int8" in isa else "AVX-512" if "avx512f" in isa
             else "AVX2" if "avx2" in isa else "NEON" if "asimd" in isa else machine or "unknown ISA")
    if vendor == "AuthenticAMD":
        gen = next((name for span, name in _AMD_ZEN.get(_int(family), []) if _int(model) in span), "")
        return f"AMD {gen or f'family {family} model {model}'}, {units}"
    if vendor == "GenuineIntel":
        return f"Intel, {units}"
    return units


def _int(text: str) -> int:
    try:
        return int(text, 0)
    except ValueError:
        return -1


def memory_bytes() -> int:
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    if platform.system() == "Darwin":
        return int(_sysctl("hw.memsize") or 0)
    return 0


def _sysctl(key: str) -> str | None:
    try:
        return subprocess.run(["sysctl", "-n", key], capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


ISA_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "avx_vnni", "amx_tile",
             "amx_int8", "amx_bf16", "asimd", "sve")


def cpu_isa() -> list[str]:
    """The SIMD/matrix features the CPU reports (/proc/cpuinfo flags), of those that matter here."""
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.exists():
        return []
    flags: set[str] = set()
    for line in cpuinfo.read_text().splitlines():
        if line.startswith(("flags", "Features")):
            flags.update(line.split(":", 1)[1].split())
            break
    return [f for f in ISA_FLAGS if f in flags]


def build_isa(system_info: str) -> list[str]:
    """The features the native build uses: the `NAME = 1` items of llama.cpp's system info."""
    names = [item.split("=")[0].split(":")[-1].strip() for item in system_info.split("|")
             if item.strip().endswith("= 1")]  # "CPU : SSE3 = 1 | AVX = 1 | ..."
    return [n for n in names if n not in ("LLAMAFILE", "REPACK", "OPENMP")]


def has_amx() -> bool:
    return "amx_int8" in cpu_isa() and "AMX_INT8" in build_isa(build_info()["system_info"])


def build_info() -> dict[str, Any]:
    """mr's version, the pinned llama.cpp commit and the native build's feature flags."""
    import mr
    from mr import _native

    flags = _native.system_info()
    backends = [b for b in ("CUDA", "Metal", "Vulkan", "HIP", "SYCL") if b.upper() in flags.upper()]
    return {"mr_version": mr.__version__, "llama_commit": _native.llama_commit(),
            "system_info": flags.strip(), "isa": build_isa(flags), "gpu_backends": backends,
            # mr: one ggml thread pool per context; llama.cpp's tools: their default (OpenMP)
            "threading": "ggml thread pool" if "OPENMP = 1" not in flags else "OpenMP",
            "mr_commit": _git_commit(), "python": platform.python_version()}


def _git_commit() -> str:
    try:
        root = Path(__file__).resolve().parents[1]
        return subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def detect() -> dict[str, Any]:
    """The device record stored with every result: where the model ran, and what else is there."""
    gpus = nvidia_gpus()
    build = build_info()
    metal = platform.system() == "Darwin" and platform.machine() == "arm64"
    if gpus and "CUDA" in build["gpu_backends"]:
        runs_on = f"cuda:{gpus[0]['name']}"
    elif metal and "Metal" in build["gpu_backends"]:
        runs_on = "metal:Apple GPU"
    else:
        runs_on = "cpu"
    return {"runs_on": runs_on, "cpu": cpu(), "nvidia_gpus": gpus, "apple_metal": metal,
            "os": f"{platform.system()} {platform.release()}", "build": build}


def describe(device: dict[str, Any]) -> str:
    """One line for tables and plot titles."""
    c = device["cpu"]
    isa = "/".join(device["build"].get("isa", [])) or "no SIMD flags"
    text = (f"{c['name']} ({c.get('class', '?')}), {c['usable_cores']} cores, {c['memory_gib']} GiB, "
            f"build uses {isa}")
    for gpu in device["nvidia_gpus"]:
        text += f"; GPU {gpu['name']} {gpu['memory_mib']} MiB (driver {gpu['driver']})"
    if device["apple_metal"]:
        text += "; Apple Metal"
    return f"{text}; model on {device['runs_on']}"
