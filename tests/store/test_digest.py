"""The one digest validator, and that every path into the store goes through it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mr.store import digest as digests
from mr.store.errors import InvalidDigestError
from mr.store.layout import Layout

GOOD = "sha256:" + "0123456789abcdef" * 4
BAD = [
    "sha256:../../x",
    "sha256:../../../../etc/passwd",
    "sha256:" + "a" * 63,
    "sha256:" + "a" * 65,
    "sha256:" + "A" * 64,
    "SHA256:" + "a" * 64,
    "sha256:" + "a" * 63 + "\0",
    "sha256:" + "a" * 32 + "\0" + "a" * 31,
    "sha256:%2e%2e%2f%2e%2e",
    "sha256:" + "%2e" * 21 + "a",
    "sha256:" + "a" * 64 + "\n",
    "sha256:" + "a" * 64 + "/..",
    " sha256:" + "a" * 64,
    "md5:" + "a" * 32,
    "sha256:" + "g" * 64,
    "sha512:" + "a" * 64,
    "",
    "sha256:",
    None,
    b"sha256:" + b"a" * 64,
    64,
]


def test_accepts_sha256_and_sha512() -> None:
    assert digests.validate(GOOD) == GOOD
    assert digests.validate("sha512:" + "f" * 128)
    assert digests.short_id(GOOD) == "0123456789ab"


@pytest.mark.parametrize("value", BAD)
def test_rejects(value: object) -> None:
    with pytest.raises(InvalidDigestError):
        digests.validate(value)
    assert not digests.is_valid(value)


@pytest.mark.parametrize("value", BAD[:12])
def test_layout_paths_refuse_before_touching_files(value: str, tmp_path: Path) -> None:
    layout = Layout(tmp_path / "root")
    for fn in (layout.blob_path, layout.partial_path, layout.manifest_path, layout.bundle_dir,
               layout.blob_lock_path):
        with pytest.raises(InvalidDigestError):
            fn(value)
    assert not (tmp_path / "root").exists()


@pytest.mark.parametrize("value", ["sha256:../../x", "sha256:" + "A" * 64, "sha256:%2e%2e"])
def test_store_verbs_refuse_bad_ids(store, value: str, tmp_path: Path) -> None:
    before = sorted(p.name for p in tmp_path.iterdir())
    for call in (store.resolve, store.remove, store.bundle_path):
        with pytest.raises(InvalidDigestError):
            call(value)
    with pytest.raises(InvalidDigestError):
        store.tag(value, "x:y")
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_tampered_index_entries_are_ignored(store, tmp_path: Path) -> None:
    root = tmp_path / "models"
    root.mkdir()
    (root / "models.json").write_text(json.dumps({"models": [
        {"id": "sha256:../../../victim", "tags": ["docker.io/ai/evil:latest"], "files": []},
        {"id": GOOD, "tags": ["docker.io/ai/evil2:latest"], "files": ["sha256:../../etc/passwd"]},
    ]}))
    assert store.list() == []
    from mr.errors import ModelNotFoundError

    with pytest.raises(ModelNotFoundError):
        store.remove("evil")
    with pytest.raises(ModelNotFoundError):
        store.remove("evil2")
