"""Ctrl+C during `mr pull` (RELIABILITY 14): the command stops at once with exit code 130, the
store shows no half-pulled model, and the bytes already downloaded stay as a partial that the
next `mr pull` continues with a Range request from where it stopped (never from zero)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from mr.store import Store, package_gguf
from support.env import subprocess_env
from support.registry_stub import Fault, StubRegistry


def _mr(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "mr", *args], env=subprocess_env(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_ctrl_c_leaves_a_partial_that_the_next_pull_resumes(stub: StubRegistry, store: Store, make_gguf,
                                                              tmp_path: Path) -> None:
    source = Store(tmp_path / "source")
    model = package_gguf(source, make_gguf(rows=4096), "m")  # 1 MiB of weights
    stub.add_from_store(source, "m", "test/m", "v1")
    weights = model.manifest.weights[0]
    stub.faults.append(Fault(f"/blobs/{weights.digest}", "slow", times=1, delay=0.05))  # ~3 s for it
    ref = f"{stub.host}/test/m:v1"
    partial = store.layout.partial_path(weights.digest)

    pulling = _mr("pull", ref)
    deadline = time.monotonic() + 30
    while not (partial.exists() and partial.stat().st_size > 100_000):
        assert time.monotonic() < deadline and pulling.poll() is None, pulling.communicate()
        time.sleep(0.01)
    pulling.send_signal(signal.SIGINT)
    interrupted = time.monotonic()
    _out, err = pulling.communicate(timeout=30)
    assert time.monotonic() - interrupted < 2
    assert pulling.returncode == 130 and "Traceback" not in err, err

    kept = partial.stat().st_size
    assert 100_000 < kept < weights.size
    assert store.list() == [] and not store.blobs.has(weights.digest)
    gets_before = len(stub.requests_for("/blobs/" + weights.digest))

    resumed = _mr("pull", ref)
    _out, err = resumed.communicate(timeout=60)
    assert resumed.returncode == 0, err
    gets = stub.requests_for("/blobs/" + weights.digest)[gets_before:]
    assert [g.headers.get("Range") for g in gets] == [f"bytes={kept}-"]  # from where it stopped
    assert store.blobs.verify(weights.digest) and not partial.exists()
    assert [m.id for m in store.list()] == [model.id]
