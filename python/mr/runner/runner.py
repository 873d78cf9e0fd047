"""Which models are loaded: lazy loading, keep-alive, a memory budget with LRU eviction.

Everything here runs on the server's event loop (no locks beyond one asyncio.Lock that serialises
loads); blocking work (header reads, llama.cpp loads) goes to threads. A request holds a Lease
while it uses a model, so a model is never unloaded under a running request.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

from mr.engine.options import EngineOptions
from mr.rpc import WorkerMemory
from mr.runner import workers
from mr.runner.errors import InsufficientMemoryError, LoadTimeoutError, ModelBusyError
from mr.runner.loaded import Lease, LoadedModel, ModelState
from mr.runner.memory import MemoryEstimate, default_budget, estimate, projector_estimate, system_memory
from mr.runner.modes import model_mode
from mr.runner.settings import ModelSettings, SettingsFile
from mr.runner.source import ModelSource, ResolvedModel
from mr.runner.trim import limit_arenas, release_freed_memory
from mr.units import human_bytes

if TYPE_CHECKING:
    from mr.engine import LLM

log = logging.getLogger("mr.runner")


def probe_workers(endpoints: tuple[str, ...]) -> list[WorkerMemory]:
    """Each RPC worker's memory (blocking; ModelLoadError names one that cannot be reached)."""
    from mr.engine.workers import probe

    return probe(endpoints)


@dataclass
class RunnerConfig:
    # How every model is run. A model's own settings (mr configure) replace n_ctx, n_slots and
    # rpc; n_ctx None: the package's context, else the model's (capped); draft_model may name a
    # model of the store as well as a GGUF path (it is resolved at each load).
    engine: EngineOptions = field(default_factory=EngineOptions)
    keep_alive: float = 300.0  # seconds; math.inf: forever; 0: unload when idle
    max_embed_queue: int = 8  # embedding requests waiting per model for its embedding context
    memory_budget: int | None = None  # bytes for models; None: 80% of RAM, or 90% of VRAM with a GPU
    load_timeout: float = 300.0  # how long a request waits for a model to load

    @property
    def max_queue(self) -> int:
        """Requests waiting per model beyond its slots (then 503)."""
        return self.engine.max_queue


class Runner:
    def __init__(self, source: ModelSource, config: RunnerConfig | None = None,
                 settings: SettingsFile | None = None) -> None:
        self.source = source
        self.config = config or RunnerConfig()
        self.settings = settings or SettingsFile(None)
        self._loaded: dict[str, LoadedModel] = {}
        self._draining: set[LoadedModel] = set()  # unloaded while busy; memory still in use
        self._loading: dict[str, asyncio.Future[LoadedModel]] = {}
        self._load_lock = asyncio.Lock()
        self._budget: tuple[int, int | None] | None = None
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self.loads: dict[str, int] = {}  # display name -> how many times it was loaded
        limit_arenas()  # before any engine thread exists: RSS stays flat across reloads

    # ---- budget ----

    @property
    def budget(self) -> tuple[int, int | None]:
        """What the machine offers mr: (RAM, VRAM or None without a GPU), in bytes."""
        if self._budget is None:
            self._budget = default_budget()
        return self._budget

    def _uses_gpu(self) -> bool:
        return self.budget[1] is not None and self.config.engine.n_gpu_layers != 0

    def _pool(self) -> int:
        """The budget models are placed in: the configured one, else VRAM with a GPU, else RAM."""
        if self.config.memory_budget is not None:
            return self.config.memory_budget
        ram, vram = self.budget
        return vram if self._uses_gpu() and vram is not None else ram

    @property
    def pool_size(self) -> int:
        return self._pool()

    def used_memory(self) -> int:
        return sum(m.memory for m in (*self._loaded.values(), *self._draining))

    def worker_memory(self) -> dict[str, int]:
        """RPC worker -> the bytes the loaded models put on it."""
        used: dict[str, int] = {}
        for m in (*self._loaded.values(), *self._draining):
            for endpoint, n in m.worker_memory.items():
                used[endpoint] = used.get(endpoint, 0) + n
        return used

    # ---- leases ----

    async def acquire(self, name: str, keep_alive: float | None = None) -> Lease:
        """A lease on `name`, loading it first if needed (waiting, bounded, for a load in progress)."""
        if self._closed:
            raise ModelBusyError("the server is shutting down")
        self._loop = asyncio.get_running_loop()
        resolved = await self._resolve(name)
        for _ in range(3):
            model = self._loaded.get(resolved.id)
            if model is not None and model.state is ModelState.READY and not self._drop_if_lost(model):
                return self._lease(model, keep_alive)
            await self._wait_loaded(resolved)
        raise ModelBusyError(f"model {name} was unloaded while loading; try again")

    async def _resolve(self, name: str) -> ResolvedModel:
        hit = self.source.cached(name)
        if hit is not None:
            return hit
        return await asyncio.to_thread(self.source.resolve, name)

    def _lease(self, model: LoadedModel, keep_alive: float | None) -> Lease:
        model.active += 1
        model.expires_at = None
        if model.timer is not None:
            model.timer.cancel()
            model.timer = None
        if keep_alive is not None:
            model.keep_alive = keep_alive
        return Lease(model, self._release)

    def _release(self, lease: Lease) -> None:
        model = lease.model
        model.active -= 1
        model.last_used = time.time()
        if self._drop_if_lost(model) or model.active > 0:
            return
        if model.state is not ModelState.READY or self._loaded.get(model.id) is not model:
            self._close(model)
        else:
            self._schedule_idle(model)

    def _schedule_idle(self, model: LoadedModel) -> None:
        if math.isinf(model.keep_alive):
            model.expires_at = None
            return
        if model.keep_alive <= 0:
            self._unload(model)
            return
        model.expires_at = time.time() + model.keep_alive
        if self._loop is not None and not self._loop.is_closed():
            model.timer = self._loop.call_later(model.keep_alive, self._expire, model)

    def _expire(self, model: LoadedModel) -> None:
        model.timer = None
        if model.active == 0 and self._loaded.get(model.id) is model:
            log.info("unloading %s: idle for %.0fs", model.name, model.keep_alive)
            self._unload(model)

    # ---- loading ----

    async def _wait_loaded(self, resolved: ResolvedModel) -> None:
        future = self._loading.get(resolved.id)
        if future is None:
            future = asyncio.get_running_loop().create_future()
            self._loading[resolved.id] = future
            task = asyncio.create_task(self._load(resolved, future))
            task.add_done_callback(lambda _t: self._loading.pop(resolved.id, None))
        try:
            await asyncio.wait_for(asyncio.shield(future), timeout=self.config.load_timeout)
        except TimeoutError:
            raise LoadTimeoutError(f"model {resolved.name} is still loading; try again shortly") from None

    async def _load(self, resolved: ResolvedModel, future: asyncio.Future[LoadedModel]) -> None:
        try:
            async with self._load_lock:
                model = await self._load_locked(resolved)
        except BaseException as exc:
            if not future.done():
                future.set_exception(exc)
            future.exception()  # mark retrieved: nobody may be waiting any more
            if not isinstance(exc, Exception):
                raise
            return
        future.set_result(model)

    async def _load_locked(self, resolved: ResolvedModel) -> LoadedModel:
        existing = self._loaded.get(resolved.id)
        if existing is not None and existing.state is ModelState.READY:
            return existing
        settings = self.model_settings(resolved)
        engine = self.config.engine
        n_ctx = settings.context_size or engine.n_ctx or resolved.context_size
        n_slots = settings.parallel or engine.n_slots
        est = await asyncio.to_thread(estimate, resolved.gguf_paths, n_ctx, engine.n_ubatch,
                                      n_slots if engine.kv_per_slot else 1)
        draft = await self._draft_path()
        if draft is not None:  # its weights, and a KV stream per slot as long as the model's
            est = est.plus(await asyncio.to_thread(estimate, [draft], est.n_ctx, engine.n_ubatch, n_slots))
        if resolved.mmproj_path is not None:  # images and audio: the projector and its buffers
            est = est.plus(await asyncio.to_thread(projector_estimate, resolved.mmproj_path))
        rpc = tuple(settings.rpc) if settings.rpc is not None else engine.rpc
        # An unreachable worker fails the load here, named, before anything is allocated.
        reported = await asyncio.to_thread(probe_workers, rpc) if rpc else []
        self._make_room(resolved, est, reported)
        keep_alive = settings.keep_alive if settings.keep_alive is not None else self.config.keep_alive
        started = time.perf_counter()
        files = await asyncio.to_thread(self.source.hold, resolved)
        try:
            llm = await asyncio.to_thread(self._open, resolved, est.n_ctx, n_slots, rpc, draft)
            if self._closed:
                llm.close()
                raise ModelBusyError("the server is shutting down")
        except BaseException:
            self._release_files(files, resolved)
            raise
        model = LoadedModel(resolved=resolved, llm=llm, estimate=est, n_ctx=llm.n_ctx, n_slots=n_slots,
                            keep_alive=keep_alive, on_gpu=self._uses_gpu(), hold=files,
                            mode=model_mode(resolved.config, settings), think=settings.think,
                            placement=llm.placement)
        if rpc:
            model.plan = workers.actual(est, model.placement, llm.model.n_layer)
        self._loaded[resolved.id] = model
        self.loads[resolved.name] = self.loads.get(resolved.name, 0) + 1
        log.info("loaded %s in %.2fs: %s", resolved.name, time.perf_counter() - started, est.describe())
        self._schedule_idle_after_load(model)
        return model

    def _schedule_idle_after_load(self, model: LoadedModel) -> None:
        # The requests waiting for this load take their leases right away; a model nobody
        # takes (a warm-up load) idles from now.
        if model.keep_alive > 0 and not math.isinf(model.keep_alive):
            model.expires_at = time.time() + model.keep_alive
            model.timer = asyncio.get_running_loop().call_later(model.keep_alive, self._expire, model)

    async def _draft_path(self) -> Path | None:
        """The draft model's GGUF (RunnerConfig.engine.draft_model): a file, or a model of the store."""
        name = self.config.engine.draft_model
        if not name:
            return None
        if Path(name).is_file():
            return Path(name)
        return (await self._resolve(name)).gguf_paths[0]

    def _open(self, resolved: ResolvedModel, n_ctx: int, n_slots: int, rpc: tuple[str, ...],
              draft: Path | None = None) -> LLM:
        from mr.engine import LLM

        template = None
        if resolved.chat_template_path is not None:
            template = resolved.chat_template_path.read_text(encoding="utf-8")
        mmproj = resolved.mmproj_path or self.config.engine.mmproj
        options = msgspec.structs.replace(self.config.engine, n_ctx=n_ctx, n_slots=n_slots, rpc=rpc,
                                          draft_model=str(draft) if draft is not None else None,
                                          mmproj=str(mmproj) if mmproj else None)
        return LLM(resolved.gguf_paths[0], options, chat_template=template)

    def _make_room(self, resolved: ResolvedModel, est: MemoryEstimate,
                   reported: list[WorkerMemory]) -> None:
        pool = self._pool()
        if reported:  # a share goes to the workers: each must have room for its part
            plan = workers.predict(est, reported, self._local_weight())
            room = workers.room(workers.reported_totals(reported), self.worker_memory())
            why = workers.refusal(resolved.name, est, plan, pool, room)
            if why:
                raise InsufficientMemoryError(f"{why}; add workers, lower its context size (mr "
                                              "configure --context-size) or raise the budget")
            self._evict_for(plan.local, f"load {resolved.name}")
            return
        if est.total > pool:
            raise InsufficientMemoryError(
                f"model {resolved.name} needs {est.describe()}, more than the memory budget of "
                f"{human_bytes(pool)}; lower its context size (mr configure --context-size) or raise "
                f"the budget (--memory-budget)")
        self._evict_for(est.total, f"load {resolved.name}")

    def _evict_for(self, needed: int, purpose: str, keep: LoadedModel | None = None) -> None:
        """Unload idle models, least recently used first, until `needed` more bytes fit."""
        pool = self._pool()
        idle = sorted((m for m in self._loaded.values() if m.active == 0 and m is not keep),
                      key=lambda m: m.last_used)
        while self.used_memory() + needed > pool:
            if not idle:
                raise ModelBusyError(
                    f"not enough free memory to {purpose} ({human_bytes(needed)} needed, "
                    f"{human_bytes(max(pool - self.used_memory(), 0))} free): the loaded models are busy")
            victim = idle.pop(0)
            log.info("evicting %s to %s", victim.name, purpose)
            self._unload(victim)

    def _local_weight(self) -> int:
        """What the engine weighs this machine's share by (a device's free memory, as ggml
        reports it: all of RAM for the CPU)."""
        vram = self.budget[1]
        return vram if self._uses_gpu() and vram is not None else system_memory()

    def _drop_if_lost(self, model: LoadedModel) -> bool:
        """Unload a model whose RPC worker went away (its requests fail until it is loaded
        again; the next request reloads it, once the worker is back). True when it was."""
        why = model.lost_worker() if model.state is ModelState.READY else ""
        if not why:
            return False
        log.warning("unloading %s: %s", model.name, why)
        for stream in list(model.streams):
            stream.abort(why)
        self._unload(model)
        return True

    def reserve_embedder(self, model: LoadedModel, kind: str = "embed") -> None:
        """Count an embedding context (`embed`, or `rank` for reranking; each is created on
        first use, with its own KV cache and compute buffers) in the budget before it exists,
        making room as for a load."""
        if kind in model.contexts:
            return
        extra = model.estimate.kv_cache + model.estimate.compute
        if model.memory + extra > self._pool():
            raise InsufficientMemoryError(
                f"embeddings with {model.name} need {human_bytes(extra)} more for the embedding context "
                f"than the memory budget of {human_bytes(self._pool())} leaves; raise the budget "
                f"(--memory-budget) or lower the context size")
        self._evict_for(extra, f"create the embedding context of {model.name}", keep=model)
        model.embedder_memory += extra
        model.contexts.add(kind)

    # ---- unloading ----

    def _unload(self, model: LoadedModel) -> None:
        if self._loaded.get(model.id) is model:
            del self._loaded[model.id]
        if model.timer is not None:
            model.timer.cancel()
            model.timer = None
        model.expires_at = None
        if model.active == 0:
            self._close(model)
        else:
            model.state = ModelState.DRAINING  # the last lease closes it
            self._draining.add(model)

    def _close(self, model: LoadedModel) -> None:
        if model.state in (ModelState.CLOSING, ModelState.GONE):
            return
        for stream in list(model.streams):
            stream.abort("the model was unloaded")
        model.state = ModelState.CLOSING
        self._draining.discard(model)
        hold, model.hold = model.hold, None
        loop = self._loop
        if loop is None or loop.is_closed() or not _on_loop(loop):
            _close_llm(model)
            self._release_files(hold, model.resolved)
            model.state = ModelState.GONE
            return
        # Stopping the engine joins its thread, which first finishes its step (long on a big
        # model): a worker thread waits for it, never the event loop.
        model.closed = loop.run_in_executor(None, _close_llm, model)

        def closed(_: object) -> None:
            self._release_files(hold, model.resolved)
            model.state = ModelState.GONE
            if not loop.is_closed():  # once the callers holding the model have let go of it
                loop.call_later(0.5, release_freed_memory)

        model.closed.add_done_callback(closed)

    def _release_files(self, hold: object, resolved: ResolvedModel) -> None:
        if hold is None:
            return
        try:
            self.source.release(hold, resolved)  # file locks and unlinks: milliseconds
        except Exception:
            log.exception("releasing the files of %s failed", resolved.name)

    async def unload(self, names: list[str] | None = None) -> tuple[int, int]:
        """Unload the named models (all when `names` is None): (how many were closed, how many
        drain). A busy one drains: it finishes its requests, then closes; until then it stays
        in `ps` and in the memory budget."""
        if names is None:
            targets = list(self._loaded.values())
        else:
            targets = []
            for name in names:
                resolved = await self._resolve(name)
                model = self._loaded.get(resolved.id)
                if model is not None:
                    targets.append(model)
        for model in targets:
            self._unload(model)
        # Answered once the closed ones are really gone (engine stopped, files released).
        await asyncio.gather(*(m.closed for m in targets if m.closed is not None), return_exceptions=True)
        draining = sum(1 for m in targets if m.state is ModelState.DRAINING)
        return len(targets) - draining, draining

    async def load(self, name: str, keep_alive: float | None = None) -> LoadedModel:
        """Load (or keep) a model without using it (Ollama's empty generate request)."""
        lease = await self.acquire(name, keep_alive)
        lease.release()
        return lease.model

    def loaded(self) -> list[LoadedModel]:
        return list(self._loaded.values())

    def find_loaded(self, model_id: str) -> LoadedModel | None:
        return self._loaded.get(model_id)

    def ps(self) -> list[dict[str, object]]:
        models = sorted((*self._loaded.values(), *self._draining), key=lambda m: -m.last_used)
        return [m.to_ps() for m in models]

    # ---- settings ----

    def model_settings(self, resolved: ResolvedModel) -> ModelSettings:
        return self.settings.get(*resolved.keys, resolved.id)

    async def mode_of(self, name: str) -> tuple[str, str]:
        """(display name, mode) of a model, loaded or not: routes refuse before loading."""
        resolved = await self._resolve(name)
        loaded = self._loaded.get(resolved.id)
        if loaded is not None:
            return loaded.name, loaded.mode
        return resolved.name, model_mode(resolved.config, self.model_settings(resolved))

    async def configure(self, name: str, settings: ModelSettings) -> ModelSettings:
        """Persist `settings` for `name`; a loaded model keeps running until it is reloaded,
        except for keep-alive, mode and thinking, which apply at once."""
        resolved = await self._resolve(name)
        key = resolved.keys[0] if resolved.keys else resolved.id
        merged = await asyncio.to_thread(self.settings.set, key, settings)
        model = self._loaded.get(resolved.id)
        if model is not None:
            model.mode = model_mode(resolved.config, merged)
            model.think = merged.think
        if model is not None and settings.keep_alive is not None:
            model.keep_alive = settings.keep_alive
            if model.active == 0:
                if model.timer is not None:
                    model.timer.cancel()
                    model.timer = None
                self._schedule_idle(model)
        return merged

    # ---- shutdown ----

    def drain(self) -> None:
        """End every in-flight stream and embedding (server shutdown): their clients get an
        error saying so, and no native call keeps a worker thread (and the process) alive."""
        self._closed = True
        for model in [*self._loaded.values(), *self._draining]:
            for stream in list(model.streams):
                stream.abort("the server is shutting down")
            model.llm.cancel_embeddings("the server is shutting down")

    async def close(self) -> None:
        self.drain()
        for model in list(self._loaded.values()):
            self._unload(model)
        for model in list(self._draining):
            self._close(model)


def _on_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


def _close_llm(model: LoadedModel) -> None:
    try:
        model.llm.close()
    except Exception:
        log.exception("closing %s failed", model.name)
