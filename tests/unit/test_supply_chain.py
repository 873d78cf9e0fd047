"""RELIABILITY 28: the dependencies that rendered or served untrusted input are new enough, the
native module carries the pinned llama.cpp, and mr's patches to it are its own and listed."""

from __future__ import annotations

import importlib.metadata
import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _version(name: str) -> tuple[int, ...]:
    return tuple(int(p) for p in importlib.metadata.version(name).split(".")[:3] if p.isdigit())


def test_server_library_is_a_patched_version() -> None:
    # Chat templates are rendered by llama.cpp's own (bounded) renderer, not by a Python library.
    assert _version("litestar") >= (2, 13)


def test_the_module_carries_the_pinned_llama_cpp() -> None:
    from mr import _native

    spec = importlib.util.spec_from_file_location("fetch", ROOT / "vendor" / "fetch.py")
    assert spec is not None and spec.loader is not None
    fetch = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fetch)
    assert _native.llama_commit() == fetch.PIN["upstream_commit"]


def test_patches_are_small_and_listed() -> None:
    patches = sorted((ROOT / "vendor" / "patches").glob("*.patch"))
    assert patches, "the patch directory is the list"
    for patch in patches:
        assert patch.name[:4].isdigit() and patch.stat().st_size < 64 * 1024, patch.name
