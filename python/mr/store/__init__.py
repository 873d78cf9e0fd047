"""mr's model store: OCI artifacts in Docker Model Runner's layout (COMPAT.md).

    from mr.store import Store, package_gguf
    store = Store()                     # root: MR_MODELS_DIR or $MR_HOME/models
    store.pull("ai/smollm2", progress=True)
    model = store.resolve("smollm2")    # LocalModel: .id .tags .config .gguf_path ...

Only light imports here; the registry client (oras, requests) loads on pull/push.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mr.store.errors import (
    ConflictError,
    DigestMismatchError,
    DiskFullError,
    InvalidDigestError,
    InvalidManifestError,
    InvalidReferenceError,
    RegistryAuthError,
    RegistryError,
)
from mr.store.model import LocalModel
from mr.store.reference import Reference, normalise, parse
from mr.store.store import DiskUsage, Store

if TYPE_CHECKING:
    from mr.store.pull import PullResult


def package_gguf(store: Store, gguf_path: Any, target_ref: str, licenses: Any = (),
                 chat_template: Any = None, context_size: int | None = None,
                 mmproj: Any = None) -> LocalModel:
    """Package a local GGUF (first shard for split models) into `store` as `target_ref`."""
    from mr.store.package import package_gguf as _package

    return _package(store, gguf_path, target_ref, licenses=licenses, chat_template=chat_template,
                    context_size=context_size, mmproj=mmproj)


def import_default_model(store: Store, reference: str | None = None) -> LocalModel:
    """Package the embedded SmolLM2 into `store` as `ai/smollm2:latest` unless already there."""
    from mr.store.package import import_default_model as _import

    return _import(store, reference)


__all__ = [
    "ConflictError",
    "DigestMismatchError",
    "DiskFullError",
    "DiskUsage",
    "InvalidDigestError",
    "InvalidManifestError",
    "InvalidReferenceError",
    "LocalModel",
    "PullResult",
    "Reference",
    "RegistryAuthError",
    "RegistryError",
    "Store",
    "import_default_model",
    "normalise",
    "package_gguf",
    "parse",
]


def __getattr__(name: str) -> Any:
    if name == "PullResult":
        from mr.store.pull import PullResult

        return PullResult
    raise AttributeError(name)
