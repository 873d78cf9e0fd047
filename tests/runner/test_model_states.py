"""A loaded model's life as one state (ModelState: ready, draining, closing, gone) and the
interface the runner asks of its model sources, on the runner itself: the tiny model through a
PathSource and through a real store, no server."""

from __future__ import annotations

import asyncio
import inspect
from pathlib import Path

from mr.engine import EngineOptions
from mr.runner import ModelSource, PathSource, Runner, RunnerConfig, StoreSource
from mr.runner.loaded import ModelState

ENGINE = EngineOptions(n_ctx=256, n_slots=1)


async def _settled(model: object) -> None:
    """Wait for a closing model's engine to stop and its done callback to run."""
    closed = getattr(model, "closed", None)
    if closed is not None:
        await closed
    await asyncio.sleep(0)


def test_a_model_unloaded_while_leased_drains_then_closes(tiny_gguf: Path) -> None:
    async def scenario() -> None:
        runner = Runner(PathSource({"tiny": tiny_gguf}), RunnerConfig(engine=ENGINE))
        try:
            lease = await runner.acquire("tiny")
            model = lease.model
            assert model.state is ModelState.READY and runner.ps()[0]["status"] == "loaded"
            assert await runner.unload(["tiny"]) == (0, 1)
            assert model.state is ModelState.DRAINING
            assert [m["status"] for m in runner.ps()] == ["draining"]  # still in ps and the budget
            assert runner.used_memory() == model.memory > 0
            assert runner.loaded() == []  # but no new lease gets it
            lease.release()
            assert model.state in (ModelState.CLOSING, ModelState.GONE)
            await _settled(model)
            assert model.state is ModelState.GONE
            assert runner.ps() == [] and runner.used_memory() == 0
        finally:
            await runner.close()

    asyncio.run(scenario())


def test_an_idle_model_unloads_straight_to_gone_and_loads_anew(tiny_gguf: Path) -> None:
    async def scenario() -> None:
        runner = Runner(PathSource({"tiny": tiny_gguf}), RunnerConfig(engine=ENGINE))
        try:
            first = await runner.load("tiny")
            assert first.state is ModelState.READY
            assert await runner.unload(["tiny"]) == (1, 0)
            await _settled(first)
            assert first.state is ModelState.GONE
            second = await runner.load("tiny")
            assert second is not first and second.state is ModelState.READY
            assert runner.loads == {"tiny": 2}
        finally:
            await runner.close()

    asyncio.run(scenario())


def test_every_source_implements_what_the_runner_calls(tiny_gguf: Path, tmp_path: Path) -> None:
    from mr.store import Store, package_gguf

    declared = {name for name, _ in inspect.getmembers(ModelSource, inspect.isfunction)
                if not name.startswith("_")}
    assert declared == {"resolve", "cached", "hold", "release"}
    for source_type in (PathSource, StoreSource):
        for name in declared:
            ours = inspect.signature(getattr(source_type, name))
            assert list(ours.parameters) == list(inspect.signature(getattr(ModelSource, name)).parameters)

    store = Store(tmp_path / "store")
    package_gguf(store, tiny_gguf, "ai/tiny")

    async def scenario() -> None:
        source = StoreSource(store)
        runner = Runner(source, RunnerConfig(engine=ENGINE))
        try:
            model = await runner.load("ai/tiny")
            assert model.hold is not None  # the store holds its files while it is loaded
            assert source.cached("ai/tiny") == model.resolved  # no thread for the next request
            await runner.unload(["ai/tiny"])
            await _settled(model)
            assert model.hold is None and model.state is ModelState.GONE
        finally:
            await runner.close()

    asyncio.run(scenario())


def test_a_store_model_with_a_projector_loads_it_and_counts_it(tiny_vlm: tuple[Path, Path],
                                                               tmp_path: Path) -> None:
    """The mmproj layer reaches the engine (images accepted), and the memory budget holds the
    projector's weights and compute buffers besides the model's."""
    from mr.runner.memory import estimate, projector_estimate
    from mr.store import Store, package_gguf

    model_path, mmproj = tiny_vlm
    store = Store(tmp_path / "store")
    package_gguf(store, model_path, "ai/vlm", mmproj=mmproj)
    projector = projector_estimate(mmproj)
    assert projector.weights > 0 and projector.compute > 0 and projector.kv_cache == 0

    async def scenario() -> None:
        runner = Runner(StoreSource(store), RunnerConfig(engine=ENGINE))
        try:
            lease = await runner.acquire("ai/vlm")
            assert lease.llm.accepts == frozenset({"image"})
            text_only = estimate([model_path], ENGINE.n_ctx)
            assert lease.model.estimate.total == text_only.total + projector.total
            lease.release()
        finally:
            await runner.close()

    asyncio.run(scenario())
