"""Fixtures for the deployment tests: a model store the replicas share, clusters of real HAProxy
and `mr serve` processes (tests/deploy/_cluster.py), stopped after each test, and HAProxy alone."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from _cluster import MODEL, Cluster, balancer_alone, require_haproxy, start_cluster


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, tiny_gguf: Path) -> Path:
    """One store both replicas serve (as replicas pulling from one registry would hold)."""
    from mr.store import Store, package_gguf

    root = tmp_path_factory.mktemp("replica-store")
    package_gguf(Store(root), tiny_gguf, MODEL)
    return root


@pytest.fixture
def clusters(store: Path, tmp_path: Path) -> Iterator[Callable[..., Cluster]]:
    """start(config=..., replica_args=...) -> a running Cluster; all are stopped afterwards."""
    require_haproxy()
    started: list[Cluster] = []

    def start(**options: object) -> Cluster:
        base = tmp_path / f"cluster-{len(started)}"
        base.mkdir()
        started.append(start_cluster(store, base, **options))  # type: ignore[arg-type]
        return started[-1]

    yield start
    for cluster in started:
        cluster.stop()


@pytest.fixture
def balancer(tmp_path: Path) -> Iterator[str]:
    """deploy/haproxy.cfg run by HAProxy with no replica up (its URL): for its own rules."""
    require_haproxy()
    url, proc = balancer_alone(tmp_path)
    yield url
    proc.terminate()
    proc.wait(timeout=30)
