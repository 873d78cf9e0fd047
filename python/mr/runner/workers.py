"""The memory budget of models that put layers on llama.cpp RPC workers.

A worker serves one mr process at a time, so what it reports (its RAM or VRAM, capped by `mr
worker --mem`) is all for this runner: a worker's room is its reported total minus the shares of
the models already loaded on it. Before a load, the split is predicted the way the engine makes it
(by memory: this machine's against the workers'); after it, the real split (layers per device)
replaces the prediction in the accounting.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from mr.rpc import LayerPlacement, WorkerMemory, shares
from mr.runner.memory import MemoryEstimate
from mr.units import human_bytes


@dataclass(frozen=True)
class WorkerPlan:
    """How much of a model goes where, in bytes."""

    local: int
    remote: dict[str, int]  # endpoint -> bytes


def reported_totals(reported: Iterable[WorkerMemory]) -> dict[str, int]:
    """endpoint -> the memory its devices report in all."""
    totals: dict[str, int] = {}
    for w in reported:
        totals[w.endpoint] = totals.get(w.endpoint, 0) + w.total
    return totals


def predict(est: MemoryEstimate, reported: list[WorkerMemory], local_memory: int) -> WorkerPlan:
    """The engine spreads layers by memory: this machine keeps local/(local + workers')."""
    totals = reported_totals(reported)
    free = {w.endpoint: 0 for w in reported}
    for w in reported:
        free[w.endpoint] += w.free
    weight = local_memory + sum(free.values())
    local = int(est.total * local_memory / weight) if weight else est.total
    remote_bytes = est.total - local
    remote_weight = sum(free.values()) or 1
    remote = {ep: int(remote_bytes * free[ep] / remote_weight) for ep in totals}
    return WorkerPlan(local=local, remote=remote)


def actual(est: MemoryEstimate, placement: list[LayerPlacement], n_layer: int) -> WorkerPlan:
    """The split llama.cpp made (layers per device), in bytes of the estimate."""
    local, remote = shares(placement, n_layer)
    return WorkerPlan(local=int(est.total * local),
                      remote={ep: int(est.total * f) for ep, f in remote.items()})


def refusal(name: str, est: MemoryEstimate, plan: WorkerPlan, pool: int,
            room: dict[str, int]) -> str | None:
    """Why `plan` does not fit (None when it does): this machine's pool, or a worker's room."""
    if plan.local > pool:
        return (f"model {name} needs {est.describe()}; its share on this machine, {human_bytes(plan.local)}, "
                f"is more than the memory budget of {human_bytes(pool)}")
    for endpoint, need in plan.remote.items():
        if need > room.get(endpoint, 0):
            return (f"model {name} needs {est.describe()}; its share on the RPC worker at {endpoint}, "
                    f"{human_bytes(need)}, is more than the "
                    f"{human_bytes(max(room.get(endpoint, 0), 0))} that "
                    f"worker has left (it reports what `mr worker --mem` allows)")
    return None


def room(totals: dict[str, int], used: dict[str, int]) -> dict[str, int]:
    """What each worker has left for another model."""
    return {ep: total - used.get(ep, 0) for ep, total in totals.items()}
