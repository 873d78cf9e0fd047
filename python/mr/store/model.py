"""A model in the store, and its bundle: the files an engine loads, hard-linked to the blobs."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from filelock import FileLock

from mr.store import artifact
from mr.store import digest as digests
from mr.store.reference import display, familiar

if TYPE_CHECKING:
    from mr.store.store import Store


@dataclass
class LocalModel:
    id: str
    tags: list[str]
    files: list[str]
    manifest: artifact.Manifest
    config: dict[str, Any]
    created: datetime | None
    _store: Store = field(repr=False, compare=False)

    @property
    def short_id(self) -> str:
        return digests.short_id(self.id)

    @property
    def name(self) -> str:
        """Display name of the first tag (or the short ID when untagged)."""
        return display(self.tags[0]) if self.tags else self.short_id

    @property
    def display_tags(self) -> list[str]:
        return [display(t) for t in self.tags]

    @property
    def size(self) -> int:
        """Bytes of the weights (all GGUF shards)."""
        return sum(d.size for d in self.manifest.weights)

    @property
    def created_ts(self) -> int:
        return int(self.created.timestamp()) if self.created else 0

    @property
    def context_size(self) -> int | None:
        value = self.config.get("context_size")
        return value if isinstance(value, int) and value > 0 else None

    # -- bundle (made on first request) --------------------------------------------------------
    @property
    def bundle_path(self) -> Path:
        return self._store.bundle_path(self)

    @property
    def gguf_paths(self) -> list[Path]:
        bundle = self.bundle_path
        return [bundle / "model" / name for name in _weight_names(len(self.manifest.weights))]

    @property
    def gguf_path(self) -> Path:
        """The first (or only) weights file: `bundles/sha256/<id>/model/model.gguf`."""
        return self.gguf_paths[0]

    @property
    def chat_template_path(self) -> Path | None:
        if self.manifest.first_of(artifact.CHAT_TEMPLATE) is None:
            return None
        return self.bundle_path / "model" / "template.jinja"

    @property
    def mmproj_path(self) -> Path | None:
        if self.manifest.first_of(artifact.MMPROJ) is None:
            return None
        return self.bundle_path / "model" / "model.mmproj"

    @property
    def license_paths(self) -> list[Path]:
        return [self._store.blobs.path(d.digest) for d in self.manifest.all_of(artifact.LICENSE)]

    # -- views --------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """DMR's model object: `{id, tags, created, config}` (tags as stored)."""
        return {"id": self.id, "tags": list(self.tags), "created": self.created_ts,
                "config": self.config}

    def to_openai(self) -> dict[str, Any]:
        return {"id": familiar(self.tags[0]) if self.tags else self.id, "object": "model",
                "created": self.created_ts, "owned_by": "docker"}


def _weight_names(count: int) -> list[str]:
    if count == 1:
        return ["model.gguf"]
    return [f"model-{i:05d}-of-{count:05d}.gguf" for i in range(1, count + 1)]


def bundle_files(model: LocalModel) -> dict[str, str]:
    """Relative bundle path -> blob digest, for every file the bundle holds."""
    files = {f"model/{n}": d.digest for n, d in zip(_weight_names(len(model.manifest.weights)),
                                                   model.manifest.weights, strict=True)}
    template = model.manifest.first_of(artifact.CHAT_TEMPLATE)
    if template is not None:
        files["model/template.jinja"] = template.digest
    mmproj = model.manifest.first_of(artifact.MMPROJ)
    if mmproj is not None:
        files["model/model.mmproj"] = mmproj.digest
    return files


def _is_complete(bundle: Path, files: dict[str, str], store: Store) -> bool:
    try:
        return (bundle / "config.json").is_file() and all(
            os.path.samefile(bundle / rel, store.blobs.path(d)) for rel, d in files.items()
        )
    except OSError:
        return False


def _link(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:  # a filesystem without hard links: copy (still read-only)
        shutil.copyfile(src, dst)
        os.chmod(dst, 0o444)


def ensure_bundle(store: Store, model: LocalModel) -> Path:
    """Create `bundles/sha256/<id>/` if missing or incomplete; safe across processes."""
    bundle = store.layout.bundle_dir(model.id)
    files = bundle_files(model)
    if _is_complete(bundle, files, store):
        return bundle
    lock_path = store.layout.locks_dir / f"bundle-{digests.hex_of(model.id)}.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(lock_path)):
        if _is_complete(bundle, files, store):
            return bundle
        tmp = bundle.parent / f".tmp-{digests.hex_of(model.id)[:12]}-{uuid.uuid4().hex[:8]}"
        (tmp / "model").mkdir(parents=True)
        try:
            for rel, d in files.items():
                _link(store.blobs.path(d), tmp / rel)
            config = store.blobs.path(model.manifest.config.digest)
            if config.exists():
                _link(config, tmp / "config.json")
            else:
                (tmp / "config.json").write_text(json.dumps({"config": model.config}))
            if bundle.exists():
                shutil.rmtree(bundle)
            os.rename(tmp, bundle)
        finally:
            with contextlib.suppress(OSError):
                shutil.rmtree(tmp)
    return bundle
