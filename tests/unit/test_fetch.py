"""vendor/fetch.py: the pinned llama.cpp source, verified before it is used."""

from __future__ import annotations

import hashlib
import importlib.util
import io
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

FETCH = Path(__file__).resolve().parents[2] / "vendor" / "fetch.py"


def load_fetch():
    spec = importlib.util.spec_from_file_location("mr_vendor_fetch", FETCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fake_sdist(path: Path, fetch) -> Path:
    root = fetch.sdist_name()[: -len(".tar.gz")]
    with tarfile.open(path, "w:gz") as tar:
        for name, data in {
            f"{root}/vendor/llama.cpp/include/llama.h": b"// llama.h\n",
            f"{root}/vendor/llama.cpp/.git": b"gitdir: ../../.git/modules/x\n",
            f"{root}/llama_cpp/__init__.py": b"",
        }.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_hash_mismatch_stops_with_a_clear_message(tmp_path: Path) -> None:
    fetch = load_fetch()
    archive = fake_sdist(tmp_path / load_fetch().sdist_name(), fetch)
    result = subprocess.run([sys.executable, str(FETCH), "--archive", str(archive),
                             "--dest", str(tmp_path / "llama.cpp")], capture_output=True, text=True)
    assert result.returncode == 1
    assert "sha256 mismatch" in result.stderr and fetch.PIN["sha256"] in result.stderr
    assert not (tmp_path / "llama.cpp").exists()
    assert not archive.exists()  # an unverified download is not kept


def test_extracts_only_the_subtree_and_stamps_the_commit(tmp_path: Path, monkeypatch) -> None:
    fetch = load_fetch()
    archive = fake_sdist(tmp_path / fetch.sdist_name(), fetch)
    monkeypatch.setitem(fetch.PIN, "sha256", hashlib.sha256(archive.read_bytes()).hexdigest())
    no_patches = tmp_path / "no-patches"
    dest = fetch.fetch(tmp_path / "llama.cpp", archive, no_patches)
    assert (dest / "include" / "llama.h").read_bytes() == b"// llama.h\n"
    assert not (dest / ".git").exists()
    assert fetch.is_current(dest, no_patches)
    assert (dest / ".mr-pin").read_text().strip() == fetch.PIN["upstream_commit"]


def test_the_pin_is_the_one_the_build_carries() -> None:
    from mr import _native

    fetch = load_fetch()
    assert fetch.PIN["upstream_commit"] == _native.llama_commit()
    assert fetch.PIN["package"] == "llama-cpp-python" and fetch.PIN["version"] == "0.3.36"


@pytest.mark.parametrize("flag", ["--print-commit"])
def test_print_commit(flag: str) -> None:
    out = subprocess.run([sys.executable, str(FETCH), flag], capture_output=True, text=True).stdout
    assert out.strip() == load_fetch().PIN["upstream_commit"]


SOURCE = "int tile(void) {\n    int rows = 8;\n    load(&rows);\n    return rows;\n}\n"
PATCH = """--- a/src/tile.c
+++ b/src/tile.c
@@ -1,5 +1,6 @@
 int tile(void) {
     int rows = 8;
+    barrier();
     load(&rows);
     return rows;
 }
"""


def sdist_with(path: Path, fetch, files: dict[str, bytes]) -> Path:
    root = fetch.sdist_name()[: -len(".tar.gz")]
    with tarfile.open(path, "w:gz") as tar:
        for name, data in {"include/llama.h": b"// llama.h\n", **files}.items():
            info = tarfile.TarInfo(f"{root}/vendor/llama.cpp/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def pinned_sdist(tmp_path: Path, fetch, monkeypatch) -> Path:
    archive = sdist_with(tmp_path / fetch.sdist_name(), fetch, {"src/tile.c": SOURCE.encode()})
    monkeypatch.setitem(fetch.PIN, "sha256", hashlib.sha256(archive.read_bytes()).hexdigest())
    return archive


def test_patches_are_applied_and_recorded_in_the_stamp(tmp_path: Path, monkeypatch) -> None:
    fetch = load_fetch()
    archive = pinned_sdist(tmp_path, fetch, monkeypatch)
    patches = tmp_path / "patches"
    patches.mkdir()
    (patches / "0001-barrier.patch").write_text(PATCH)
    dest = fetch.fetch(tmp_path / "llama.cpp", archive, patches)
    assert "    barrier();\n    load(&rows);" in (dest / "src" / "tile.c").read_text()
    assert fetch.is_current(dest, patches)
    # A changed patch set makes the tree stale, and the next fetch re-extracts and re-applies.
    (patches / "0001-barrier.patch").write_text(PATCH.replace("barrier();", "fence();"))
    assert not fetch.is_current(dest, patches)
    fetch.fetch(dest, archive, patches)
    text = (dest / "src" / "tile.c").read_text()
    assert "fence();" in text and "barrier();" not in text


def test_a_patch_that_does_not_match_the_pin_stops_the_fetch(tmp_path: Path, monkeypatch) -> None:
    fetch = load_fetch()
    archive = pinned_sdist(tmp_path, fetch, monkeypatch)
    patches = tmp_path / "patches"
    patches.mkdir()
    (patches / "0001-stale.patch").write_text(PATCH.replace("int rows = 8;", "int rows = 16;"))
    with pytest.raises(fetch.FetchError, match="does not apply"):
        fetch.fetch(tmp_path / "llama.cpp", archive, patches)
    assert not (tmp_path / "llama.cpp").exists()  # never a half-patched tree


def test_the_shipped_patches_apply_to_the_built_tree() -> None:
    fetch = load_fetch()
    assert fetch.patch_files(), "vendor/patches/ is empty"
    vendor = FETCH.parent / "llama.cpp"
    if not vendor.exists():
        pytest.skip("vendor/llama.cpp is not fetched")
    assert fetch.is_current(vendor), "vendor/llama.cpp does not carry the current patch set"
