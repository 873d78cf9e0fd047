"""The engine's view of its llama.cpp RPC workers (see mr.rpc): probing them, and where a loaded
model's layers went."""

from __future__ import annotations

from collections.abc import Iterable

from mr import _native
from mr.rpc import LayerPlacement, WorkerMemory


def probe(endpoints: Iterable[str]) -> list[WorkerMemory]:
    """Connect to each worker and read its memory (blocking; ModelLoadError names one that
    cannot be reached)."""
    return [WorkerMemory(*row) for row in _native.probe_workers(list(endpoints))]


def placement_of(model: _native.Model) -> list[LayerPlacement]:
    return [LayerPlacement(*row) for row in model.placement]

