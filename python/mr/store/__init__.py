"""mr's model store: OCI artifacts in Docker Model Runner's layout (COMPAT.md).

    from mr.store import Store
    from mr.store.pull import pull
    store = Store()                     # root: MR_MODELS_DIR or $MR_HOME/models
    pull(store, "ai/smollm2", progress=True)
    model = store.resolve("smollm2")    # LocalModel: .id .tags .config .gguf_path ...

`Store` is the local content and index; pull, push and package are functions over it (the
modules mr.store.pull, .push and .package). Only light imports here: the registry client (oras,
requests) loads on pull/push.
"""

from __future__ import annotations

import importlib
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
    from mr.store.package import import_default_model, package_gguf
    from mr.store.pull import PullResult

_LAZY = {"PullResult": "mr.store.pull", "package_gguf": "mr.store.package",
         "import_default_model": "mr.store.package"}


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
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(name)
