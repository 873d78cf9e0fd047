"""A loaded model (its engine, memory estimate, keep-alive state) and a lease on it."""

from __future__ import annotations

import asyncio
import enum
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import msgspec

from mr.jsontypes import JSON
from mr.rpc import LayerPlacement
from mr.runner.duration import format_duration
from mr.runner.memory import MemoryEstimate
from mr.runner.source import ResolvedModel
from mr.runner.workers import WorkerPlan

if TYPE_CHECKING:
    from mr.engine import LLM


class Closable(Protocol):
    def close(self) -> None: ...

    def abort(self, why: str) -> None:
        """End it from outside; its consumer must see an error, not a complete answer."""
        ...


class ModelState(enum.Enum):
    """Where a loaded model is in its life. A model is loading before a LoadedModel exists (the
    runner's load futures stand for that), so a LoadedModel starts READY:

        READY --unload, no lease--> CLOSING --engine stopped, files released--> GONE
        READY --unload while leased--> DRAINING --last lease released--> CLOSING

    Only a READY model is in the runner's table and takes new leases; a DRAINING one finishes
    its requests and stays in `ps` and in the memory budget until it closes."""

    READY = "loaded"
    DRAINING = "draining"
    CLOSING = "closing"  # its engine stops in a worker thread (LoadedModel.closed)
    GONE = "gone"


@dataclass(eq=False)
class LoadedModel:
    resolved: ResolvedModel
    llm: LLM
    estimate: MemoryEstimate
    n_ctx: int
    n_slots: int
    keep_alive: float  # seconds; math.inf = never unload while idle
    on_gpu: bool = False
    mode: str = "completion"  # completion | embedding | reranking (mr.runner.modes)
    think: bool | None = None  # `mr configure --think`: the default when a request does not say
    loaded_at: float = field(default_factory=time.time)
    last_used: float = field(default_factory=time.time)
    expires_at: float | None = None  # wall-clock time; None while in use or when kept forever
    state: ModelState = ModelState.READY
    active: int = 0  # leases held
    streams: set[Closable] = field(default_factory=set)
    timer: asyncio.TimerHandle | None = None
    embed_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    embed_waiting: int = 0  # embedding requests queued behind embed_lock
    embedder_memory: int = 0  # the embedding contexts, counted once each is reserved
    contexts: set[str] = field(default_factory=set)  # which ones: "embed", "rank"
    hold: object = None  # the source's hold on the model's files (StoreSource.hold)
    closed: asyncio.Future[None] | None = None  # set while its engine stops in a worker thread
    placement: list[LayerPlacement] = field(default_factory=list)  # where its layers live
    plan: WorkerPlan | None = None  # its share on this machine and on each RPC worker

    @property
    def memory(self) -> int:
        """What it takes of this machine's budget (its workers' shares are counted apart)."""
        local = self.plan.local if self.plan is not None else self.estimate.total
        return local + self.embedder_memory

    @property
    def worker_memory(self) -> dict[str, int]:
        return dict(self.plan.remote) if self.plan is not None else {}

    def lost_worker(self) -> str:
        """Why one of its RPC workers is gone, or ""."""
        try:
            return self.llm.lost_worker
        except Exception:  # closed under us
            return ""

    @property
    def id(self) -> str:
        return self.resolved.id

    @property
    def name(self) -> str:
        return self.resolved.name

    def stats(self) -> dict[str, int | float]:
        try:
            return self.llm.stats()
        except Exception:  # closed under us: report nothing rather than fail a status call
            return {}

    def until(self) -> str:
        if self.state is ModelState.DRAINING:
            return "draining"
        if self.active:
            return "active"
        if self.expires_at is None:
            return "forever" if math.isinf(self.keep_alive) else "now"
        return format_duration(max(0.0, self.expires_at - time.time()))

    def to_ps(self) -> JSON:
        stats = self.stats()
        return {
            "model_name": self.name, "model_id": self.id, "tags": list(self.resolved.tags),
            "backend_name": "llama.cpp", "mode": self.mode, "context_size": self.n_ctx,
            "request_context": self.llm.request_context,
            "parallel": self.n_slots, "keep_alive": format_duration(self.keep_alive),
            "until": self.until(), "expires_at": self.expires_at, "loaded_at": self.loaded_at,
            "last_used": self.last_used, "active_requests": self.active,
            "busy_slots": stats.get("busy_slots", 0), "queued": stats.get("queued", 0),
            "spec_drafted": stats.get("spec_drafted", 0), "spec_accepted": stats.get("spec_accepted", 0),
            "memory": self.memory, "size": self.resolved.size, "on_gpu": self.on_gpu,
            "status": self.state.value,
            "placement": msgspec.to_builtins(self.placement),
            "workers": [{"endpoint": ep, "memory": n} for ep, n in self.worker_memory.items()],
        }


class Lease:
    """One request's hold on a loaded model: the model is not unloaded or evicted while held.

    Streams registered with `track` are aborted (their clients get an error, never a finish that
    looks complete) when the model is unloaded under them or the server shuts down."""

    def __init__(self, model: LoadedModel, release: Callable[[Lease], None]) -> None:
        self.model = model
        self._release = release
        self._released = False

    @property
    def llm(self) -> LLM:
        return self.model.llm

    def track(self, stream: Closable) -> None:
        self.model.streams.add(stream)

    def untrack(self, stream: Closable) -> None:
        self.model.streams.discard(stream)

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._release(self)

    async def __aenter__(self) -> Lease:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.release()
