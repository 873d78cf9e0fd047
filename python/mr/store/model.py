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
from typing import TYPE_CHECKING

from filelock import FileLock

from mr.errors import ModelLoadError, MrError
from mr.jsontypes import JSON
from mr.store import artifact, ollama
from mr.store import digest as digests
from mr.store.defaults import ModelDefaults
from mr.store.ollama_template import translate
from mr.store.reference import display, familiar

if TYPE_CHECKING:
    from mr.store.store import Store


@dataclass
class LocalModel:
    id: str
    tags: list[str]
    files: list[str]
    manifest: artifact.Manifest
    config: JSON
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
        """A template that replaces the GGUF's own: a DMR template layer, or for an Ollama
        artifact whose GGUF has none, its Go template's Jinja equivalent (else an error)."""
        if self.manifest.is_ollama:
            return self.bundle_path / "model" / "template.jinja" if self.jinja_template() else None
        if self.manifest.first_of(artifact.CHAT_TEMPLATE) is None:
            return None
        return self.bundle_path / "model" / "template.jinja"

    @property
    def mmproj_path(self) -> Path | None:
        if self.manifest.projector is None:
            return None
        return self.bundle_path / "model" / "model.mmproj"

    @property
    def license_paths(self) -> list[Path]:
        return [self._store.blobs.path(d.digest) for d in self.manifest.licenses]

    # -- Ollama's layers ------------------------------------------------------------------------
    def layer_text(self, media_type: str) -> str | None:
        """A small text layer (template, system, params), None when absent or unreadable."""
        layer = self.manifest.first_of(media_type)
        if layer is None or layer.size > ollama.MAX_TEMPLATE:
            return None
        try:
            return self._store.blobs.path(layer.digest).read_bytes().decode("utf-8", "replace")
        except OSError:
            return None

    @property
    def params(self) -> JSON:
        """Ollama's `.params`: the model's default stop, temperature, num_ctx..."""
        text = self.layer_text(ollama.PARAMS)
        if text is None:
            return {}
        try:
            return ollama.parse_params(text.encode())
        except MrError:
            return {}

    @property
    def system(self) -> str | None:
        """Ollama's `.system`: the default system prompt."""
        return self.layer_text(ollama.SYSTEM)

    @property
    def defaults(self) -> ModelDefaults | None:
        """What requests that say nothing get (Ollama's params and system); None for DMR's."""
        if not self.manifest.is_ollama:
            return None
        return ModelDefaults.of(self.params, self.system)

    def jinja_template(self) -> str | None:
        """For an Ollama artifact: the Jinja template mr renders with when its GGUF has none."""
        if (self.config.get("gguf") or {}).get("tokenizer.chat_template"):
            return None
        go = self.layer_text(ollama.TEMPLATE)
        if go is None:
            return None  # no template anywhere: the engine's default, as for any GGUF
        jinja = translate(go)
        if jinja is None:
            raise ModelLoadError(
                f"model {self.name} has no chat template: its GGUF has none, and its Ollama "
                "template (layer application/vnd.ollama.image.template) is not a shape mr can "
                "translate (ChatML, Llama 3, Gemma)"
            )
        return jinja

    # -- views --------------------------------------------------------------------------------
    def to_dict(self) -> JSON:
        """DMR's model object: `{id, tags, created, config}` (tags as stored)."""
        return {"id": self.id, "tags": list(self.tags), "created": self.created_ts,
                "config": self.config}

    def to_openai(self) -> JSON:
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
    mmproj = model.manifest.projector
    if mmproj is not None:
        files["model/model.mmproj"] = mmproj.digest
    return files


def generated_files(model: LocalModel) -> dict[str, bytes]:
    """Bundle files that are no blob: an Ollama Go template's Jinja equivalent."""
    if not model.manifest.is_ollama:
        return {}
    try:
        jinja = model.jinja_template()
    except ModelLoadError:
        return {}  # refused when the model is loaded (chat_template_path), not when listed
    return {"model/template.jinja": jinja.encode()} if jinja else {}


def _is_complete(bundle: Path, files: dict[str, str], made: dict[str, bytes],
                 store: Store) -> bool:
    try:
        return (bundle / "config.json").is_file() and all(
            os.path.samefile(bundle / rel, store.blobs.path(d)) for rel, d in files.items()
        ) and all((bundle / rel).read_bytes() == data for rel, data in made.items())
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
    made = generated_files(model)
    if _is_complete(bundle, files, made, store):
        return bundle
    lock_path = store.layout.locks_dir / f"bundle-{digests.hex_of(model.id)}.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(lock_path)):
        if _is_complete(bundle, files, made, store):
            return bundle
        tmp = bundle.parent / f".tmp-{digests.hex_of(model.id)[:12]}-{uuid.uuid4().hex[:8]}"
        (tmp / "model").mkdir(parents=True)
        try:
            for rel, d in files.items():
                _link(store.blobs.path(d), tmp / rel)
            for rel, data in made.items():
                (tmp / rel).write_bytes(data)
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
