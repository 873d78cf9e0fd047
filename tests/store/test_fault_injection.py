"""kill -9 of a pull at chosen points (issue 12, fault-injection suite): while writing a blob,
just before a complete blob is renamed into place, while writing the manifest, the index, the
bundle. After each kill the store shows the old state or the new one only, a complete-size
partial is re-hashed (never trusted), a re-pull succeeds and nothing is left orphaned.
MR_FAULT_RUNS sets the number of kills (scripts/faults.sh runs more)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mr.store import Store, package_gguf
from mr.store.pull import pull
from support.env import subprocess_env
from support.registry_stub import StubRegistry

RUNS = int(os.environ.get("MR_FAULT_RUNS", "24"))
# point -> how many matching calls a pull of test/m:v2 makes (the k-th one is killed)
POINTS = {"blob": 8, "blob-commit": 2, "manifest": 1, "index": 1, "bundle": 2}

# The child pulls test/m:v2 and builds its bundle; the patched primitive SIGKILLs the process on
# its k-th call matching the point. os.kill with SIGKILL: no handler, no cleanup, like kill -9.
CHILD = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    from mr.store import Store, blobs
    from mr.store.pull import pull
    root, ref, point, k = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    calls = [0]

    def maybe():
        calls[0] += 1
        if calls[0] == k:
            os.kill(os.getpid(), signal.SIGKILL)

    real_replace, real_link, real_write = os.replace, os.link, blobs.PartialBlob.write
    def replace(src, dst, *a, **kw):
        d = str(dst)
        if (point == "blob-commit" and "/blobs/" in d) or (point == "manifest" and "/manifests/" in d) \\
                or (point == "index" and d.endswith("models.json")):
            maybe()
        return real_replace(src, dst, *a, **kw)
    def link(src, dst, *a, **kw):
        if point == "bundle":
            maybe()
        return real_link(src, dst, *a, **kw)
    def write(self, data):
        real_write(self, data[: len(data) // 2])  # half a chunk on disk, then maybe die
        if point == "blob":
            maybe()
        real_write(self, data[len(data) // 2:])
    os.replace, os.link, blobs.PartialBlob.write = replace, link, write
    pull(Store(root), ref).model.gguf_path
""")


@pytest.fixture
def two_models(stub: StubRegistry, make_gguf, tmp_path: Path) -> tuple[Store, str]:
    """The store holds `old`; the stub serves a different model, test/m:v2 (1 MiB weights)."""
    store = Store(tmp_path / "models")
    package_gguf(store, make_gguf(rows=64, seed=1), "old")
    source = Store(tmp_path / "source")
    package_gguf(source, make_gguf(rows=4096, seed=2), "m")
    stub.add_from_store(source, "m", "test/m", "v2")
    return store, f"{stub.host}/test/m:v2"


def _state(store: Store, ref: str) -> set[str]:
    listed = store.list()
    state = {name for name, reference in (("old", "old"), ("new", ref)) if store.exists(reference)}
    assert len(listed) == len(state)  # nothing else, and nothing half-listed
    return state


def _tamper_complete_partials(store: Store) -> int:
    """Flip a byte of every complete-size partial: a re-pull must re-hash and refuse it."""
    flipped = 0
    for partial in (store.layout.blobs_dir / "sha256").glob("*.incomplete"):
        data = bytearray(partial.read_bytes())
        if len(data) > 1000:
            data[500] ^= 0xFF
            os.chmod(partial, 0o644)
            partial.write_bytes(bytes(data))
            flipped += 1
    return flipped


def test_kill_9_at_any_point_leaves_old_or_new_state(two_models: tuple[Store, str]) -> None:
    store, ref = two_models
    rng = random.Random(12)
    names = list(POINTS)
    plan = [(names[i % len(names)], rng.randint(1, POINTS[names[i % len(names)]])) for i in range(RUNS)]
    killed = tampered = 0
    for point, k in plan:
        child = subprocess.run([sys.executable, "-c", CHILD, str(store.root), ref, point, str(k)],
                               env=subprocess_env(), capture_output=True, text=True, timeout=120)
        assert child.returncode in (0, -signal.SIGKILL), child.stderr
        killed += child.returncode == -signal.SIGKILL
        state = _state(store, ref)
        assert state in ({"old"}, {"old", "new"}), (point, k, state)  # never a half-written model
        if "new" in state:
            model = store.resolve(ref)
            assert all(store.blobs.verify(d) for d in model.files)  # listed means complete
        tampered += _tamper_complete_partials(store)
        result = pull(store, ref)  # a re-pull succeeds after any kill
        assert result.model.gguf_path.exists()
        assert all(store.blobs.verify(d) for d in result.model.files)
        usage = store.df()
        assert (usage.partial_bytes, usage.unreferenced_bytes) == (0, 0), (point, k)  # nothing orphaned
        store.remove(ref)  # back to the old state for the next kill
        assert _state(store, ref) == {"old"} and store.df().unreferenced_bytes == 0
    print(f"\nfault injection: {len(plan)} runs, {killed} kills -9, {tampered} complete partials tampered")
    assert killed >= min(20, RUNS - 2)
