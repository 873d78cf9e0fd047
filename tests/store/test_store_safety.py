"""Store safety (issue 12 item 10): invalid index entries are quarantined, not dropped; the
settings file survives damage and concurrent writers; `package` is protected from GC before
its first blob lands; GC leaves lock files alone; a loaded model's files stay until unloaded."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from filelock import FileLock

from mr.store import Store, leases, package_gguf
from support.env import subprocess_env

BAD = {"id": "sha256:" + "0" * 64, "tags": ["evil:latest"], "files": ["sha256:../../etc/passwd"]}


def test_invalid_index_entries_are_quarantined_and_their_blobs_kept(store: Store, make_gguf) -> None:
    a = package_gguf(store, make_gguf(seed=1), "a")
    shared = a.manifest.weights[0].digest
    raw = json.loads(store.layout.index_path.read_text())
    raw["models"].append({**BAD, "files": [shared, "sha256:../../etc/passwd"]})
    store.layout.index_path.write_text(json.dumps(raw))
    assert [m.name for m in store.list()] == ["a"]  # never used
    assert store.df().quarantined == 1
    package_gguf(store, make_gguf(seed=2), "b")  # a write of the index
    kept = json.loads(store.layout.index_path.read_text())
    assert kept["quarantined"][0]["tags"] == ["evil:latest"]  # dropped by this write before
    store.remove("a")
    assert store.blobs.has(shared), "a blob the quarantined entry names was collected"


def test_a_damaged_settings_file_is_kept_aside_not_overwritten(tmp_path: Path) -> None:
    from mr.runner import ModelSettings, SettingsFile

    path = tmp_path / "model-settings.json"
    path.write_text('{"docker.io/ai/x:latest": {"context_size": 4096}, oops')
    settings = SettingsFile(path)
    assert settings.get("docker.io/ai/x:latest") == ModelSettings()  # defaults, still serving
    settings.set("docker.io/ai/y:latest", ModelSettings(parallel=2))
    aside = list(tmp_path.glob("model-settings.json.damaged-*"))
    assert len(aside) == 1 and "oops" in aside[0].read_text()  # emptied and overwritten before
    assert settings.get("docker.io/ai/y:latest").parallel == 2


def test_concurrent_settings_writers_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "model-settings.json"
    script = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        from mr.runner import ModelSettings, SettingsFile
        f = SettingsFile(Path({str(path)!r}))
        for i in range(40):
            f.set(f"{{sys.argv[1]}}-{{i}}", ModelSettings(parallel=1 + i % 8))
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script, name], env=subprocess_env())
             for name in ("a", "b", "c")]
    assert all(p.wait(120) == 0 for p in procs)
    assert len(json.loads(path.read_text())) == 120  # read-modify-write races lost keys before


def test_package_holds_its_lease_before_the_first_blob_lands(store: Store, make_gguf,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from mr.store.blobs import BlobStore

    unprotected: list[str] = []
    commit = BlobStore._commit_temp

    def checked(self: BlobStore, tmp: Path, digest: str) -> None:
        if digest not in leases.protected_digests(self.layout):
            unprotected.append(digest)  # an `rm` running now could collect it
        commit(self, tmp, digest)

    monkeypatch.setattr(BlobStore, "_commit_temp", checked)
    package_gguf(store, make_gguf(), "a")
    assert unprotected == []


def test_gc_leaves_blob_lock_files_alone(store: Store, make_gguf) -> None:
    a = package_gguf(store, make_gguf(), "a")
    digest = a.manifest.weights[0].digest
    lock_path = store.layout.blob_lock_path(digest)
    with FileLock(str(lock_path)):  # a packager importing the same file holds it
        store.remove("a")
        assert lock_path.exists()  # unlinked before: a second process could lock a new file


def test_a_model_in_use_keeps_its_files_until_released(store: Store, make_gguf) -> None:
    a = package_gguf(store, make_gguf(), "a")
    gguf = a.gguf_path
    hold = store.hold_in_use(a.id, a.files)
    lines = store.remove("a")
    assert lines[-1].startswith(f"Deleted: {a.id}") and "stay" in lines[-1]
    assert store.list() == [] and gguf.exists() and store.blobs.has(a.manifest.weights[0].digest)
    store.release_in_use(hold, a.id)
    assert not gguf.exists() and not store.blobs.has(a.manifest.weights[0].digest)
