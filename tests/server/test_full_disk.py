"""A real full disk (RELIABILITY 7): `mr package` and a server pull onto a small tmpfs, filled by
a real file, not a monkeypatched ENOSPC. Two ways to run out: the space check before writing
(less free than the model needs) and ENOSPC while writing (for the package, the free space
covers the weights' bytes, so the check passes, but not the files written after them; for the
pull, another program fills the disk while the weights download).

Each case guards: a clear error naming the need and the free space (a one-line CLI message with
exit code 9, an HTTP 507 or an NDJSON error event), a store that lost nothing (the model already
there is listed, its blobs still hash to their digests, no temp or orphan file is left), and a
retry that succeeds once space is freed (for the server: in the same process)."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from support.models import write_tiny_llama
from support.registry_stub import Fault, StubRegistry
from support.serving import serve_client, wait_for

PAGE = 4096
SIZE = "40m"  # one 14 MB tiny model and some room; a second does not fit once the filler is in


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 40 MiB tmpfs mounted for this test (root only), unmounted afterwards."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root and mount(8) to mount a small tmpfs (a real full disk)")
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SIZE}", "tmpfs", str(mount_point)], check=True)
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


@pytest.fixture(scope="module")
def ggufs(smollm2_path: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two different tiny models (random weights, seeds 0 and 1): no blob in common."""
    where = tmp_path_factory.mktemp("full-disk-ggufs")
    return (write_tiny_llama(smollm2_path, where / "a.gguf", seed=0),
            write_tiny_llama(smollm2_path, where / "b.gguf", seed=1))


def _fill(disk: Path, leave: int) -> Path:
    """A filler file that leaves `leave` bytes free on `disk`."""
    filler = disk / "filler"
    free = shutil.disk_usage(disk).free
    assert free > leave, (free, leave)
    with open(filler, "wb") as f:
        f.write(b"\0" * (free - leave))
    assert shutil.disk_usage(disk).free == leave
    return filler


def _leave_for(case: str, weights: int) -> int:
    """Free bytes to leave: less than the weights (the check refuses), or exactly the pages the
    weights take (the check passes; the writes after them meet ENOSPC)."""
    pages = -(-weights // PAGE) * PAGE
    return pages - 64 * PAGE if case == "checked" else pages


def _files(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_size for p in root.rglob("*") if p.is_file()
            and ".locks" not in p.parts}


def _assert_intact(root: Path, before: dict[str, int]) -> None:
    """Every file of the store as it was (no temp or partial left), every blob its digest."""
    assert _files(root) == before
    for blob in (root / "blobs" / "sha256").iterdir():
        assert hashlib.sha256(blob.read_bytes()).hexdigest() == blob.name, blob.name


@pytest.mark.parametrize("case", ["checked", "enospc"])
def test_package_onto_a_full_disk(small_disk: Path, ggufs: tuple[Path, Path], tmp_path: Path,
                                  case: str) -> None:
    root = small_disk / "models"
    env = {**os.environ, "MR_MODELS_DIR": str(root), "MR_HOME": str(tmp_path / "home"), "MR_DEBUG": ""}

    def mr(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "mr", *args], env=env, capture_output=True, text=True,
                              timeout=120)

    first, second = ggufs
    assert mr("package", "--gguf", str(first), "ai/first").returncode == 0
    before = _files(root)
    filler = _fill(small_disk, _leave_for(case, second.stat().st_size))
    failed = mr("package", "--gguf", str(second), "ai/second")
    assert failed.returncode == 9, failed.stderr
    message = failed.stderr.strip()
    assert "Traceback" not in failed.stderr and len(message.splitlines()) == 1, failed.stderr
    wanted = "Error: not enough disk space to package: need " if case == "checked" else \
        "Error: no space left on device: need "
    assert message.startswith(wanted) and ", free " in message, message
    _assert_intact(root, before)
    assert [m["tags"] for m in json.loads(mr("ls", "--json").stdout)] == [["docker.io/ai/first:latest"]]
    filler.unlink()  # space freed: the same command goes through
    assert mr("package", "--gguf", str(second), "ai/second").returncode == 0
    assert sorted(t for m in json.loads(mr("ls", "--json").stdout) for t in m["tags"]) == [
        "docker.io/ai/first:latest", "docker.io/ai/second:latest"]


@pytest.fixture(scope="module")
def registry(ggufs: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[StubRegistry]:
    """A registry stub serving the second tiny model as ai/second."""
    from mr.store import Store, package_gguf

    source = Store(tmp_path_factory.mktemp("full-disk-source"))
    package_gguf(source, ggufs[1], "ai/second")
    stub = StubRegistry()
    stub.add_from_store(source, "ai/second", "ai/second", "latest")
    yield stub
    stub.close()


def _pull(client: httpx.Client, ref: str) -> tuple[int, list[dict]]:
    r = client.post("/models/create", json={"from": ref}, timeout=120)
    lines = r.text.splitlines() if r.status_code == 200 else [r.text]
    return r.status_code, [json.loads(line) for line in lines]


def _fill_up(disk: Path) -> Path:
    """Write until the disk is full (another program filling the disk meanwhile)."""
    filler = disk / "filler"
    with open(filler, "wb") as f:
        try:
            while True:
                f.write(b"\0" * (1 << 20))
                f.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
    return filler


@pytest.mark.parametrize("case", ["checked", "enospc"])
def test_server_pull_onto_a_full_disk(small_disk: Path, ggufs: tuple[Path, Path], registry: StubRegistry,
                                      tmp_path: Path, case: str) -> None:
    """`checked`: less free space than the model takes, refused before a byte is written;
    `enospc`: the disk fills up while the weights download (the space check had passed)."""
    from mr.store import Store, package_gguf

    root = small_disk / "models"
    package_gguf(Store(root), ggufs[0], "ai/first")
    before = _files(root)
    ref = f"{registry.host}/ai/second"
    weights = max(registry.blobs, key=lambda d: len(registry.blobs[d]))
    with serve_client(root, tmp_path) as client:
        if case == "checked":
            filler = _fill(small_disk, _leave_for(case, ggufs[1].stat().st_size))
            status, events = _pull(client, ref)
        else:
            registry.faults.append(Fault(f"/blobs/{weights}", "slow", times=1, delay=0.01))
            with ThreadPoolExecutor(1) as pool:
                pulling = pool.submit(_pull, client, ref)
                assert wait_for(lambda: client.get("/engines/df").json()["partial_bytes"] > 0, 60)
                filler = _fill_up(small_disk)
                status, events = pulling.result(timeout=120)
        if case == "checked":  # refused before a byte is written: its own status
            assert status == 507, events
            error = events[0]["error"]
            assert error["code"] == "insufficient_storage"
            message = error["message"]
            assert message.startswith("not enough disk space to pull ") and ", free " in message
        else:  # the NDJSON had begun: the stream ends with an error event, never success
            assert status == 200 and events[-1]["type"] == "error", events[-3:]
            assert all(e["type"] != "success" for e in events)
            assert events[-1]["message"].startswith("no space left on device: need "), events[-1]
        assert {m["tags"][0] for m in client.get("/models").json()} == {"docker.io/ai/first:latest"}
        hi = {"model": "ai/first", "max_tokens": 1, "messages": [{"role": "user", "content": "hi"}]}
        assert client.post("/v1/chat/completions", json=hi).status_code == 200
        filler.unlink()  # space freed: the same server pulls it now
        status, events = _pull(client, ref)
        assert status == 200 and events[-1]["type"] == "success", events[-3:]
        assert {m["tags"][0] for m in client.get("/models").json()} == {"docker.io/ai/first:latest",
                                                                         f"{ref}:latest"}
        assert client.get("/engines/df").json()["partial_bytes"] == 0
    kept = {k: v for k, v in before.items() if k.startswith(("blobs/", "manifests/"))}
    assert {k: v for k, v in _files(root).items() if k in kept} == kept  # nothing of the first lost
    _assert_intact(root, _files(root))
