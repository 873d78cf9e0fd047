#!/usr/bin/env python3
"""Put the pinned llama.cpp source tree into vendor/llama.cpp/.

llama.cpp is never committed. It is taken from a registry package that vendors it at a known
upstream commit, checked against a pinned sha256, and only its llama.cpp subtree is extracted.
Standard library only: CMake runs this inside pip's isolated build environment.

Bumping llama.cpp means changing the PIN below and nothing else. mr's own fixes to that tree live
in vendor/patches/*.patch (unified diffs, applied in name order after extraction); the stamp
records the commit and a hash of the patch set, so a changed patch set re-extracts the tree.
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
PATCHES = HERE / "patches"
STAMP = ".mr-pin"  # the upstream commit, one line (CMake reads it)
PATCH_STAMP = ".mr-patches"  # sha256 of the applied patch set


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


def patch_files(patches: Path = PATCHES) -> list[Path]:
    return sorted(patches.glob("*.patch")) if patches.is_dir() else []


def patch_set_digest(patches: Path = PATCHES) -> str:
    digest = hashlib.sha256()
    for path in patch_files(patches):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def _hunks(lines: list[str]) -> list[tuple[list[str], list[str]]]:
    """(old, new) line blocks of each hunk of one file's diff."""
    hunks: list[tuple[list[str], list[str]]] = []
    for line in lines:
        if line.startswith("@@"):
            hunks.append(([], []))
        elif hunks and line[:1] in (" ", "-", "+"):
            old, new = hunks[-1]
            if line[0] != "+":
                old.append(line[1:])
            if line[0] != "-":
                new.append(line[1:])
        elif hunks and line.startswith("\\"):  # "\ No newline at end of file"
            continue
    return hunks


def _split_files(text: str) -> dict[str, list[str]]:
    files: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        if line.startswith("+++ "):
            name = line[4:].split("\t")[0].strip()
            name = name[2:] if name.startswith("b/") else name
            current = files.setdefault(name, [])
        elif line.startswith("--- "):
            current = None
        elif current is not None:
            current.append(line)
    return files


def apply_patch(patch: Path, root: Path) -> None:
    """Apply one unified diff with exact context (no fuzz): our patches must match the pin."""
    for name, body in _split_files(patch.read_text()).items():
        target = root / name
        if name.startswith(("/", "..")) or "/../" in name or not target.is_file():
            raise FetchError(f"{patch.name}: no file {name} in the llama.cpp tree")
        lines = target.read_text().split("\n")
        for old, new in _hunks(body):
            at = [i for i in range(len(lines) - len(old) + 1) if lines[i : i + len(old)] == old]
            if len(at) != 1:
                raise FetchError(f"{patch.name}: a hunk for {name} does not apply to the pinned tree")
            lines[at[0] : at[0] + len(old)] = new
        target.write_text("\n".join(lines))


def extract(archive: Path, dest: Path, patches: Path = PATCHES) -> None:
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
        for patch in patch_files(patches):
            apply_patch(patch, staging)
        (staging / STAMP).write_text(PIN["upstream_commit"] + "\n")
        (staging / PATCH_STAMP).write_text(patch_set_digest(patches) + "\n")
        if dest.exists():
            shutil.rmtree(dest)
        staging.rename(dest)  # atomic: a half-extracted tree is never seen as complete
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _read(path: Path) -> str:
    return path.read_text().strip() if path.exists() else ""


def is_current(dest: Path, patches: Path = PATCHES) -> bool:
    return (_read(dest / STAMP) == PIN["upstream_commit"]
            and _read(dest / PATCH_STAMP) == patch_set_digest(patches))


def fetch(dest: Path = DEFAULT_DEST, archive: Path | None = None, patches: Path = PATCHES) -> Path:
    if is_current(dest, patches):
        return dest
    archive = archive or download(cache_dir())
    verify(archive)
    extract(archive, dest, patches)
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
