"""Prepare the GPU run's carry bundle on this machine; unpack its source on the GPU machine.

The GPU machine has no network and a run carries at most 64 MiB (working tree included), so
everything the run needs beyond the repository travels in one ignored folder, bench/build/gpu-carry:

  llama.cpp-trimmed.tar.xz  the pinned vendor/llama.cpp (with its .mr-pin/.mr-patches stamps) minus
                            models, docs, tests, examples, the server UI and other GPU backends
  wheels/                   mr's runtime dependencies, its build requirements and pytest, as wheels
                            for CPython 3.11 and 3.12 on manylinux x86-64 (pure wheels where there are)
  smollm2-header.gguf       SmolLM2-135M's metadata, tokenizer and tensor list, no weights
                            (bench/random_model.py makes the random-weights model from it there)
  requirements.txt          the names gpu.sh installs from wheels/ (pyproject.toml's, read here)

    python bench/gpu_prepare.py             # build the bundle, check the size, print carry + command
    python3 bench/gpu_prepare.py unpack     # on the GPU machine (bench/gpu.sh): source -> vendor/

Standard library only at import: `unpack` runs before anything is installed.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENDOR = ROOT / "vendor" / "llama.cpp"
CARRY = ROOT / "bench" / "build" / "gpu-carry"
SOURCE = CARRY / "llama.cpp-trimmed.tar.xz"
WHEELS = CARRY / "wheels"
HEADER = CARRY / "smollm2-header.gguf"
REQUIREMENTS = CARRY / "requirements.txt"  # what gpu.sh installs from wheels/ before building mr
LIMIT = 64 << 20  # the device tool's limit: working tree + carried paths
PYTHONS = ("3.11", "3.12")
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64",
             "manylinux2014_x86_64", "manylinux1_x86_64")
EXTRA = ("scikit-build-core>=0.10", "pybind11>=2.13", "pip")  # build requirements; pip bootstraps the venv
DEVICE_COMMAND = "set -o pipefail; bash bench/gpu.sh 2>&1 | tee $OUT/run.log"

# Top-level paths of vendor/llama.cpp that no part of mr's CUDA build reads.
DROP_TOP = {"models", "docs", "media", "gguf-py", "benches", "tests", "examples", "pocs", "app", "scripts",
            "conversion", "requirements", "skills", "grammars", "ci", ".github", ".devops", ".gemini", ".pi"}
# Deeper paths: the server and its UI (LLAMA_BUILD_SERVER is off) and the other backends' sources
# (ggml_add_backend only enters a backend's folder when that backend is switched on).
DROP_PATHS = {"tools/server", "tools/ui", "tools/cli", "tools/rpc", "tools/tuning",
              *(f"ggml/src/ggml-{b}" for b in ("vulkan", "sycl", "metal", "opencl", "cann", "musa", "hip",
                                                "webgpu", "zdnn", "zendnn", "openvino", "hexagon", "et",
                                                "virtgpu", "rpc", "blas"))}


def _kept(rel: str) -> bool:
    parts = rel.split("/")
    if parts[0] in DROP_TOP or (len(parts) == 1 and parts[0].endswith(".py")):
        return False
    return not any(rel == d or rel.startswith(d + "/") for d in DROP_PATHS)


def build_source() -> Path:
    """The trimmed, stamped vendor tree as one .tar.xz (fetching the pinned tree first if needed)."""
    subprocess.run([sys.executable, str(ROOT / "vendor" / "fetch.py")], check=True)
    for stamp in (".mr-pin", ".mr-patches"):
        if not (VENDOR / stamp).is_file():
            raise SystemExit(f"[gpu_prepare] {VENDOR / stamp} is missing: fetch.py did not stamp the tree")
    files = sorted(p for p in VENDOR.rglob("*") if p.is_file() and _kept(p.relative_to(VENDOR).as_posix()))
    tmp = SOURCE.with_suffix(".tmp")
    with tarfile.open(tmp, "w:xz", preset=9) as tar:
        for path in files:
            tar.add(path, arcname=path.relative_to(VENDOR).as_posix(), recursive=False)
    tmp.replace(SOURCE)
    return SOURCE


def requirements() -> list[str]:
    import tomllib  # 3.11+: only here, never on the GPU machine's unpack path

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pytest_spec = next(r for r in project["optional-dependencies"]["test"] if r.startswith("pytest"))
    return [*project["dependencies"], *EXTRA, pytest_spec.split("#")[0].strip()]


def download_wheels(pythons: tuple[str, ...] = PYTHONS) -> Path:
    """Binary wheels only, resolved for each target CPython (dependencies included)."""
    if WHEELS.exists():
        shutil.rmtree(WHEELS)
    WHEELS.mkdir(parents=True)
    for version in pythons:
        tag = "cp" + version.replace(".", "")
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check",
               "--only-binary=:all:", "--python-version", version, "--implementation", "cp", "--abi", tag,
               *(arg for plat in PLATFORMS for arg in ("--platform", plat)), "-d", str(WHEELS),
               *requirements()]
        subprocess.run(cmd, check=True)
    REQUIREMENTS.write_text("\n".join(requirements()) + "\n")
    return WHEELS


def build_header() -> Path:
    sys.path.insert(0, str(ROOT))
    from bench.random_model import write_header
    from mr import default_model

    return write_header(default_model.fetch(), HEADER)


def tree_bytes() -> int:
    """What the device tool sends besides `carry`: tracked and untracked-not-ignored files."""
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                         capture_output=True, check=True).stdout
    return sum((ROOT / n).stat().st_size for n in out.decode().split("\0") if n and (ROOT / n).is_file())


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def missing(pythons: tuple[str, ...]) -> list[str]:
    """What the bundle lacks: a part not built, or no numpy wheel for a target CPython."""
    out = [p.name for p in (SOURCE, HEADER, REQUIREMENTS) if not p.is_file()]
    for version in pythons:
        tag = "cp" + version.replace(".", "")
        if not list(WHEELS.glob(f"numpy-*-{tag}-*.whl")):
            out.append(f"wheels for CPython {version}")
    return out


def report(pythons: tuple[str, ...] = PYTHONS) -> int:
    parts = {"working tree": tree_bytes(), SOURCE.name: _size(SOURCE), "wheels/": _size(WHEELS),
             HEADER.name: _size(HEADER)}
    total = sum(parts.values())
    for name, size in parts.items():
        print(f"  {name:<28} {size / 2**20:7.2f} MiB")
    print(f"  {'total':<28} {total / 2**20:7.2f} MiB of {LIMIT / 2**20:.0f} MiB")
    tags = sorted({w.name.split("-")[-3] for w in WHEELS.glob("*.whl")})
    print(f"  wheel python tags: {', '.join(tags)}; {len(list(WHEELS.glob('*.whl')))} wheels")
    print(f"\ncarry: {[CARRY.relative_to(ROOT).as_posix()]}\ncommand: {DEVICE_COMMAND}")
    if total > LIMIT:
        print(f"[gpu_prepare] OVER THE LIMIT by {(total - LIMIT) / 2**20:.2f} MiB", file=sys.stderr)
        return 1
    lacking = missing(pythons)
    if lacking:
        print(f"[gpu_prepare] INCOMPLETE: no {', '.join(lacking)} (run it without a step)", file=sys.stderr)
        return 1
    return 0


def unpack(archive: Path = SOURCE, dest: Path = VENDOR) -> None:
    """On the GPU machine: the trimmed tree into vendor/llama.cpp, which fetch.py then sees as current."""
    if (dest / ".mr-pin").is_file():
        print(f"[gpu_prepare] {dest} is already there", file=sys.stderr)
        return
    if not archive.is_file():
        raise SystemExit(f"[gpu_prepare] no {archive}: run bench/gpu_prepare.py here and carry "
                         f"{CARRY.relative_to(ROOT)}")
    staging = dest.with_name(dest.name + ".unpacking")
    shutil.rmtree(staging, ignore_errors=True)
    with tarfile.open(archive, "r:xz") as tar:
        tar.extractall(staging, filter="data")
    staging.rename(dest)
    print(f"[gpu_prepare] unpacked {archive.name} into {dest}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("step", nargs="?", choices=["all", "source", "wheels", "header", "check", "unpack"],
                   default="all", help="default: all (source, wheels, header, then the size check)")
    p.add_argument("--pythons", default=",".join(PYTHONS), help="CPython versions for binary wheels")
    args = p.parse_args(argv)
    if args.step == "unpack":
        unpack()
        return 0
    CARRY.mkdir(parents=True, exist_ok=True)
    if args.step in ("all", "source"):
        print(f"[gpu_prepare] {build_source()}", file=sys.stderr)
    pythons = tuple(args.pythons.split(","))
    if args.step in ("all", "wheels"):
        print(f"[gpu_prepare] {download_wheels(pythons)}", file=sys.stderr)
    if args.step in ("all", "header"):
        print(f"[gpu_prepare] {build_header()}", file=sys.stderr)
    return report(pythons)


if __name__ == "__main__":
    sys.exit(main())
