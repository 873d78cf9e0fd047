"""Debian's docker-registry on a free loopback port: the real registry the store's and the server's
tests push to and pull from (the `registry` fixture, a plugin of tests/conftest.py)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from support.workers import free_port

REGISTRY_BIN = "/usr/bin/docker-registry"


class RealRegistry:
    def __init__(self, host: str, storage: Path) -> None:
        self.host = host
        self.storage = storage

    def manifest(self, repo: str, tag: str) -> requests.Response:
        return requests.get(f"http://{self.host}/v2/{repo}/manifests/{tag}", timeout=10,
                            headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})

    def blob(self, repo: str, digest: str) -> bytes:
        r = requests.get(f"http://{self.host}/v2/{repo}/blobs/{digest}", timeout=30)
        r.raise_for_status()
        return r.content


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealRegistry]:
    """Debian's docker-registry on a free loopback port; a skip locally, a failure in CI."""
    binary = shutil.which("docker-registry")
    if binary is None and os.path.exists(REGISTRY_BIN):
        binary = REGISTRY_BIN
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("docker-registry is not installed (apt-get install docker-registry)")
        pytest.skip("docker-registry is not installed")
    base = tmp_path_factory.mktemp("registry")
    port = free_port()
    config = base / "config.yml"
    config.write_text(
        "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n"
        f"storage:\n  filesystem:\n    rootdirectory: {base / 'data'}\n"
        "  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
    )
    log = (base / "registry.log").open("wb")
    proc = subprocess.Popen([binary, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT)
    host = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if requests.get(f"http://{host}/v2/", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"docker-registry did not start: {(base / 'registry.log').read_text()}")
            time.sleep(0.1)
        yield RealRegistry(host, base / "data")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
