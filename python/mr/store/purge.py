"""Remove every model from a store (`mr purge`, /models/purge)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mr.errors import ModelNotFoundError

if TYPE_CHECKING:
    from mr.store.store import Store


def purge(store: Store) -> list[str]:
    """Deletes each model by ID (all its tags and blobs); returns DMR's lines."""
    lines: list[str] = []
    for model in store.list():
        try:
            lines += store.remove(model.id, force=True)
        except ModelNotFoundError:
            continue  # removed meanwhile by someone else
    return lines
