"""Where the runner finds models: a name resolves to GGUF files plus what the store knows of them."""

from __future__ import annotations

import contextlib
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, cast

from mr.errors import ModelNotFoundError, MrError
from mr.jsontypes import JSON

if TYPE_CHECKING:
    from mr.store import LocalModel, Store
    from mr.store.defaults import ModelDefaults
    from mr.store.leases import Lease


@dataclass(frozen=True)
class ResolvedModel:
    id: str  # the key the runner loads by: two tags of one model share one engine
    name: str  # display name (first tag)
    gguf_paths: list[Path]
    keys: tuple[str, ...] = ()  # settings keys, most specific first (canonical tag, then id)
    chat_template_path: Path | None = None
    mmproj_path: Path | None = None  # the multimodal projector (images, audio), when it has one
    context_size: int | None = None  # from the package config
    created: int = 0
    size: int = 0
    tags: list[str] = field(default_factory=list)
    config: JSON = field(default_factory=dict)
    files: tuple[str, ...] = ()  # the store blobs it is made of
    defaults: ModelDefaults | None = None  # an Ollama artifact's params and system prompt


class ModelSource(Protocol):
    """What the runner asks of where its models come from."""

    def resolve(self, name: str) -> ResolvedModel:
        """The model `name` names (blocking: it may read the store); ModelNotFoundError if none."""
        ...

    def cached(self, name: str) -> ResolvedModel | None:
        """A resolution known without blocking the event loop, or None (then `resolve` runs in
        a thread)."""
        ...

    def hold(self, resolved: ResolvedModel) -> object:
        """Keep the model's files while it is loaded (blocking); the hold goes to `release`."""
        ...

    def release(self, hold: object, resolved: ResolvedModel) -> None:
        """The model is unloaded: let go of `hold` (blocking, short)."""
        ...


class StoreSource:
    """Resolves through mr's OCI store; answers from a cache until the store's index changes."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._cache: dict[str, ResolvedModel] = {}
        self._stamp: int | None = None
        self._lock = threading.Lock()

    def resolve(self, name: str) -> ResolvedModel:
        stamp = self._index_stamp()
        with self._lock:
            if stamp != self._stamp:
                self._cache.clear()
                self._stamp = stamp
            hit = self._cache.get(name)
        if hit is not None:
            return hit
        resolved = self._resolve(name)
        with self._lock:
            self._cache[name] = resolved
        return resolved

    def cached(self, name: str) -> ResolvedModel | None:
        """The cached resolution, if the index has not changed since (one stat, no reads)."""
        stamp = self._index_stamp()
        with self._lock:
            return self._cache.get(name) if stamp == self._stamp else None

    def _index_stamp(self) -> int | None:
        try:
            st = os.stat(self.store.layout.index_path)
        except OSError:
            return None
        return st.st_mtime_ns ^ st.st_size

    def _resolve(self, name: str) -> ResolvedModel:
        model = self.store.resolve(name)
        return from_local_model(model, name)

    def hold(self, resolved: ResolvedModel) -> object:
        """While a model is loaded, `rm` (from any process) keeps its files (blocking)."""
        return self.store.hold_in_use(resolved.id, resolved.files)

    def release(self, hold: object, resolved: ResolvedModel) -> None:
        """The model is unloaded: a model removed meanwhile loses its files now (blocking)."""
        self.store.release_in_use(cast("Lease", hold), resolved.id)  # what `hold` returned


def from_local_model(model: LocalModel, requested: str) -> ResolvedModel:
    from mr.store import reference as refs

    keys: list[str] = []
    with contextlib.suppress(MrError):  # an ID or a short ID names no tag
        canonical = refs.normalise(requested)
        if canonical in model.tags:
            keys.append(canonical)
    keys.append(model.id)
    return ResolvedModel(
        id=model.id, name=model.name, gguf_paths=list(model.gguf_paths), keys=tuple(keys),
        chat_template_path=model.chat_template_path, mmproj_path=model.mmproj_path,
        context_size=model.context_size,
        created=model.created_ts, size=model.size, tags=list(model.tags), config=dict(model.config),
        files=tuple(model.files), defaults=model.defaults,
    )


class PathSource:
    """A fixed name -> GGUF mapping (embedding mr in a script; tests without a store). Its files
    are the caller's: nothing is cached or held."""

    def __init__(self, models: dict[str, Path]) -> None:
        self.models = {k: Path(v) for k, v in models.items()}

    def resolve(self, name: str) -> ResolvedModel:
        path = self.models.get(name)
        if path is None:
            raise ModelNotFoundError(f"no such model: {name}")
        return ResolvedModel(id=f"path:{name}", name=name, gguf_paths=[path], keys=(name,),
                             size=path.stat().st_size, tags=[name])

    def cached(self, name: str) -> ResolvedModel | None:
        return None

    def hold(self, resolved: ResolvedModel) -> object:
        return None

    def release(self, hold: object, resolved: ResolvedModel) -> None:
        return None
