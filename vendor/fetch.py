#!/usr/bin/env python3
"""Put the pinned llama.cpp source tree into vendor/llama.cpp/.

llama.cpp is never committed. It is taken from a registry package that vendors it at a known
upstream commit, checked against a pinned sha256, and only its llama.cpp subtree is extracted.
Standard library only: CMake runs this inside pip's isolated build environment.

Bumping llama.cpp means changing the PIN below and nothing else.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

PIN = {
    "package": "llama-cpp-python",
    "version": "0.3.36",
    "sha256": "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e",
    "subtree": "vendor/llama.cpp",
    "upstream_commit": "0c1e57098bba43ac29e6e3b677cdceebdd22334f",
}

HERE = Path(__file__).resolve().parent
DEFAULT_DEST = HERE / "llama.cpp"
STAMP = ".mr-pin"


class FetchError(RuntimeError):
    pass


def sdist_name() -> str:
    return f"{PIN['package'].replace('-', '_')}-{PIN['version']}.tar.gz"


def cache_dir() -> Path:
    root = os.environ.get("MR_VENDOR_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "mr", "vendor"
    )
    return Path(root)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download(into: Path) -> Path:
    """Download the source distribution by name with pip (no build, no dependencies)."""
    into.mkdir(parents=True, exist_ok=True)
    target = into / sdist_name()
    if target.exists():
        return target
    spec = f"{PIN['package']}=={PIN['version']}"
    # --no-build-isolation + --no-deps: pip only needs the archive, not its build requirements.
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
           "--no-build-isolation", "--disable-pip-version-check", "-d", str(into), spec]
    print(f"[mr] fetching {spec} (pinned llama.cpp source)", file=sys.stderr)
    result = subprocess.run(cmd, capture_output=True, text=True)
    if not target.exists():
        # pip prepares metadata after the download; a failure there is harmless if the file is here.
        raise FetchError(f"pip could not download {spec}:\n{result.stdout}\n{result.stderr}")
    return target


def verify(archive: Path) -> None:
    got = sha256_of(archive)
    if got != PIN["sha256"]:
        archive.unlink(missing_ok=True)
        raise FetchError(
            f"sha256 mismatch for {archive.name}: want {PIN['sha256']} got {got}. "
            "The download was removed; refusing to build from unverified source."
        )


def extract(archive: Path, dest: Path) -> None:
    prefix = f"{archive.name[: -len('.tar.gz')]}/{PIN['subtree']}/"
    staging = Path(tempfile.mkdtemp(prefix=".llama.cpp-", dir=dest.parent))
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar.getmembers():
                if not member.name.startswith(prefix) or not (member.isfile() or member.isdir()):
                    continue
                member.name = member.name[len(prefix):]
                if not member.name or member.name.startswith(("/", "..")) or "/../" in member.name:
                    continue
                if member.name == ".git":  # a submodule pointer to a repository we do not have
                    continue
                tar.extract(member, staging, filter="data")
        if not (staging / "include" / "llama.h").exists():
            raise FetchError(f"{archive.name} has no {PIN['subtree']}/include/llama.h")
        (staging / STAMP).write_text(PIN["upstream_commit"] + "\n")
        if dest.exists():
            shutil.rmtree(dest)
        staging.rename(dest)  # atomic: a half-extracted tree is never seen as complete
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def is_current(dest: Path) -> bool:
    stamp = dest / STAMP
    return stamp.exists() and stamp.read_text().strip() == PIN["upstream_commit"]


def fetch(dest: Path = DEFAULT_DEST, archive: Path | None = None) -> Path:
    if is_current(dest):
        return dest
    archive = archive or download(cache_dir())
    verify(archive)
    extract(archive, dest)
    print(f"[mr] llama.cpp {PIN['upstream_commit'][:12]} ready in {dest}", file=sys.stderr)
    return dest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", type=Path, default=DEFAULT_DEST)
    parser.add_argument("--archive", type=Path, help="use this sdist instead of downloading")
    parser.add_argument("--print-commit", action="store_true", help="print the pinned commit")
    args = parser.parse_args(argv)
    if args.print_commit:
        print(PIN["upstream_commit"])
        return 0
    try:
        fetch(args.dest, args.archive)
    except FetchError as exc:
        print(f"[mr] error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
