"""Builds llama.cpp's own tools (llama-bench, llama-server, ...) from the same vendor tree as mr.

They go into bench/build/ (ignored), with the same backend switches as mr's build (MR_CUDA=1
adds CUDA), so every comparison is against the exact kernels mr runs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENDOR = ROOT / "vendor" / "llama.cpp"
BUILD = ROOT / "bench" / "build"


def ensure_vendor() -> None:
    if not (VENDOR / "include" / "llama.h").exists():
        subprocess.run([sys.executable, str(ROOT / "vendor" / "fetch.py")], check=True)


def tool(name: str) -> Path:
    """Path to a built tool, built or brought up to date first.

    Always through the build system: a tool left from before vendor/fetch.py re-extracted the
    tree (a new patch, a new pin) would compare mr with kernels it no longer runs. When nothing
    changed, ninja says so in about a second."""
    exe = BUILD / "bin" / name
    if not (BUILD / "build.ninja").exists():
        ensure_vendor()
        subprocess.run(configure(VENDOR, BUILD), check=True, stdout=subprocess.DEVNULL)
    if not exe.exists():
        print(f"[bench] building {name} from vendor/llama.cpp (minutes the first time)", file=sys.stderr)
    subprocess.run(["cmake", "--build", str(BUILD), "--target", name], check=True, stdout=subprocess.DEVNULL)
    return exe


def configure(source: Path, build: Path) -> list[str]:
    """The cmake command that sets up `build` for llama.cpp's tools from the tree at `source`."""
    cuda = "ON" if os.environ.get("MR_CUDA", "0") not in ("", "0", "OFF") else "OFF"
    cmd = [
        "cmake", "-S", str(source), "-B", str(build), "-G", "Ninja", "-DCMAKE_BUILD_TYPE=Release",
        "-DBUILD_SHARED_LIBS=OFF", "-DLLAMA_BUILD_TOOLS=ON", "-DLLAMA_BUILD_SERVER=ON",
        "-DLLAMA_BUILD_EXAMPLES=ON", "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_OPENSSL=OFF",
        f"-DGGML_CUDA={cuda}", "-DGGML_NATIVE=ON",
    ]
    if shutil.which("ccache"):
        cmd += ["-DCMAKE_C_COMPILER_LAUNCHER=ccache", "-DCMAKE_CXX_COMPILER_LAUNCHER=ccache"]
    return cmd


if __name__ == "__main__":
    for name in sys.argv[1:] or ["llama-bench"]:
        print(tool(name))
