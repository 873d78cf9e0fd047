"""llama.cpp RPC workers: endpoints, where a model's layers live, what memory workers report.

A model loaded with RPC workers (`--rpc host:port,...`) keeps its first layers on this machine
(its share by memory) and spreads the rest over the workers (`mr worker`), in proportion to the
memory each reports. The RPC protocol has no authentication: workers belong on a trusted network.
Light on purpose (no native import): the CLI and the runner's settings read it.
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from mr.errors import InvalidArgumentError

MAX_WORKERS = 16  # ggml's GGML_RPC_MAX_SERVERS
DEFAULT_PORT = 50052  # llama.cpp's rpc-server default


class LayerPlacement(msgspec.Struct, frozen=True):
    """One device holding layers of a model: this machine's ("host" empty) or a worker's."""

    device: str  # ggml's device name: CPU, CUDA0, RPC0, ...
    host: str  # the worker's host:port; "" for this machine
    layers: int  # repeating layers (of n_layer)
    output: bool  # it holds the output layer too


class WorkerMemory(msgspec.Struct, frozen=True):
    """What a worker reported when it was connected (`mr worker --mem` caps it)."""

    endpoint: str
    device: str
    free: int
    total: int


def parse_endpoints(value: str | Iterable[str] | None) -> tuple[str, ...]:
    """"h1:p1,h2:p2" (or a list of them) -> ("h1:p1", "h2:p2"); checked, duplicates refused.
    "none" or "" means no workers."""
    if value is None:
        return ()
    parts = value.split(",") if isinstance(value, str) else list(value)
    endpoints = tuple(p.strip() for p in parts if p.strip() and p.strip().lower() != "none")
    for endpoint in endpoints:
        host, sep, port = endpoint.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536 or " " in host:
            raise InvalidArgumentError(f"an RPC worker is HOST:PORT, got {endpoint!r}")
    if len(set(endpoints)) != len(endpoints):
        raise InvalidArgumentError("an RPC worker is named twice")
    if len(endpoints) > MAX_WORKERS:
        raise InvalidArgumentError(f"at most {MAX_WORKERS} RPC workers")
    return endpoints


def shares(placement: list[LayerPlacement], n_layer: int) -> tuple[float, dict[str, float]]:
    """(this machine's fraction of the model, {worker: its fraction}), counted in layers with the
    output layer as one more: weights, KV cache and compute buffers follow the layers."""
    if not placement:
        return 1.0, {}
    slots = max(n_layer + 1, 1)
    local = 0.0
    remote: dict[str, float] = {}
    for p in placement:
        part = (p.layers + (1 if p.output else 0)) / slots
        if p.host:
            remote[p.host] = remote.get(p.host, 0.0) + part
        else:
            local += part
    return local, remote
