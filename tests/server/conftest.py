"""Server tests: a real store (SmolLM2 and a tiny random model packaged into it), real uvicorn
servers on free ports, and the official openai / ollama / httpx clients."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from _serving import ServerThread

SMOL = "ai/smollm2"
TINY = "ai/tiny"


@pytest.fixture(scope="session")
def store_root(tmp_path_factory: pytest.TempPathFactory, smollm2_path: Path, tiny_gguf: Path) -> Path:
    """A model store holding ai/smollm2 (the real model) and ai/tiny (random weights)."""
    from mr.store import Store, package_gguf

    root = tmp_path_factory.mktemp("store")
    store = Store(root)
    package_gguf(store, smollm2_path, SMOL)
    package_gguf(store, tiny_gguf, TINY)
    return root


@pytest.fixture(scope="session")
def mr_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mr-home")


def make_settings(store_root: Path, mr_home: Path, **overrides: object):
    from mr.server import Settings

    base = dict(ctx_size=2048, parallel=4, models_dir=str(store_root),
                settings_path=str(mr_home / "model-settings.json"), log_requests=False)
    base.update(overrides)
    return Settings(**base)  # type: ignore[arg-type]


def serve(store_root: Path, mr_home: Path, **overrides: object) -> ServerThread:
    from mr.server import create_app

    return ServerThread(create_app(make_settings(store_root, mr_home, **overrides)))


@contextmanager
def serve_client(store_root: Path, mr_home: Path, **overrides: object) -> Iterator[httpx.Client]:
    """A server of its own (settings overridden) and an httpx client for it."""
    with serve(store_root, mr_home, **overrides) as running, httpx.Client(base_url=running.url,
                                                                           timeout=60) as client:
        yield client


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
