"""Server tests: real uvicorn servers on free ports over the test store (tests/conftest.py), and
the official openai / ollama / httpx clients."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

# SMOL and TINY: test_soak.py and test_tool_call_parity.py (changes in flight elsewhere) still
# import them from conftest; once they import support.serving, they go from here.
from support.serving import SMOL, TINY, ServerThread, serve  # noqa: F401


@pytest.fixture(scope="session")
def mr_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mr-home")


@pytest.fixture(scope="session")
def server(store_root: Path, mr_home: Path) -> Iterator[ServerThread]:
    """The shared server: default safety settings, 4 slots, 2048-token context."""
    with serve(store_root, mr_home) as running:
        yield running


@pytest.fixture(scope="session")
def base_url(server: ServerThread) -> str:
    return server.url


@pytest.fixture(scope="session")
def det_url(store_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A server in the deterministic mode (`mr serve --deterministic`; each slot 2048 tokens, as
    the shared server's requests): for tests that compare greedy answers across requests (cold and
    cached, streamed and not), equal there by construction on every CPU. With the default kernels
    a cached prefix or another batch shape can flip a near-tie on some CPUs."""
    with serve(store_root, tmp_path_factory.mktemp("det-home"), deterministic=True, ctx_size=8192) as running:
        yield running.url


@pytest.fixture
def http(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=60) as client:
        yield client


@pytest.fixture
def oai(base_url: str):
    import openai

    return openai.OpenAI(base_url=f"{base_url}/v1", api_key="unused", max_retries=0, timeout=60)


@pytest.fixture
def det_oai(det_url: str):
    import openai

    return openai.OpenAI(base_url=f"{det_url}/v1", api_key="unused", max_retries=0, timeout=60)


@pytest.fixture
def det_aoai(det_url: str):
    import openai

    return openai.AsyncOpenAI(base_url=f"{det_url}/v1", api_key="unused", max_retries=0, timeout=60)


@pytest.fixture
def aoai(base_url: str):
    import openai

    return openai.AsyncOpenAI(base_url=f"{base_url}/v1", api_key="unused", max_retries=0, timeout=60)
