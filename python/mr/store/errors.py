"""Errors of the model store, each with its own CLI exit code and HTTP status.

All subclass mr.errors classes, so the CLI and the server translate them like any other mr error.
Messages never contain absolute paths.
"""

from __future__ import annotations

from mr.errors import InvalidArgumentError, ModelNotFoundError, MrError


class InvalidReferenceError(InvalidArgumentError):
    """A model reference that does not parse (exit 2, HTTP 400)."""


class InvalidDigestError(InvalidArgumentError):
    """A digest that is not `sha256:` + 64 lowercase hex (or sha512 likewise)."""


class RegistryError(MrError):
    """The registry is unreachable, refused the request or answered garbage (exit 8)."""

    exit_code = 8
    http_status = 502
    code = "registry_error"


class RegistryAuthError(RegistryError):
    """The registry wants credentials we do not have, or refused them."""

    code = "registry_unauthorized"


class InvalidManifestError(RegistryError):
    """A manifest or config that mr refuses: bad media type, no weights, absurd sizes..."""

    code = "invalid_manifest"


class DigestMismatchError(RegistryError):
    """Downloaded bytes do not hash to what the manifest promised (exit 10)."""

    exit_code = 10
    code = "digest_mismatch"


class DiskFullError(MrError):
    """Not enough free space for the download or the package (exit 9, HTTP 507)."""

    exit_code = 9
    http_status = 507
    code = "insufficient_storage"


class ConflictError(MrError):
    """rm of a model ID that several tags name, without force (exit 11, HTTP 409)."""

    exit_code = 11
    http_status = 409
    code = "conflict"


AmbiguousReferenceError = ConflictError


class StoreCorruptError(MrError):
    """The store's index or layout file cannot be read (exit 12)."""

    exit_code = 12
    http_status = 500
    code = "store_corrupt"


class RemoteModelNotFoundError(ModelNotFoundError):
    """The registry has no such repository or tag."""


__all__ = [
    "AmbiguousReferenceError",
    "ConflictError",
    "DigestMismatchError",
    "DiskFullError",
    "InvalidDigestError",
    "InvalidManifestError",
    "InvalidReferenceError",
    "ModelNotFoundError",
    "RegistryAuthError",
    "RegistryError",
    "RemoteModelNotFoundError",
    "StoreCorruptError",
]
