"""Runner tests: the runner's parts on their own, and its lifecycle (loads, keep-alive, the memory
budget, eviction, draining) through real servers over a store of the test models (support.serving)."""

from __future__ import annotations

from pathlib import Path

import pytest

from support.serving import package_test_store


@pytest.fixture(scope="session")
def store_root(tmp_path_factory: pytest.TempPathFactory, smollm2_path: Path, tiny_gguf: Path) -> Path:
    """A model store holding ai/smollm2 (the real model) and ai/tiny (random weights)."""
    return package_test_store(tmp_path_factory.mktemp("store"), smollm2_path, tiny_gguf)
