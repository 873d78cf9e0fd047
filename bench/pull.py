"""Pull speed: mr's store pulling a model from a loopback registry vs a plain `curl` of the same
weights blob, A B A B (target >= 0.8). Run it with `python -m bench pull`.

The registry is Debian's `docker-registry` on a free 127.0.0.1 port with storage in a temporary
folder; the model is packaged and pushed there first. Each mr pull goes into a fresh store, so
nothing is a cache hit; curl writes to /dev/null, so it pays no hashing or disk write: the ratio
is what verification and the atomic store cost on top of the transfer.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from bench.core import Measure, paired, ratio

if TYPE_CHECKING:
    from bench.context import Context

PART = "pull"
REPO = "bench/model"
GGUF_MEDIA = "application/vnd.docker.ai.gguf.v3"


def run(ctx: Context) -> None:
    binary = shutil.which("docker-registry") or "/usr/bin/docker-registry"
    if not Path(binary).exists():
        ctx.results.note(PART, "docker-registry is not installed: pull not measured")
        return
    with tempfile.TemporaryDirectory(prefix="mr-bench-pull-") as tmp:
        host, proc = _start_registry(binary, Path(tmp))
        try:
            _measure(ctx, host, Path(tmp))
        finally:
            proc.terminate()
            proc.wait(timeout=10)


def _measure(ctx: Context, host: str, tmp: Path) -> None:
    import requests

    from mr.store import Store

    ref = f"{host}/{REPO}:latest"
    source = Store(tmp / "source")
    source.package(ctx.model, ref)
    source.push(ref)
    manifest = requests.get(f"http://{host}/v2/{REPO}/manifests/latest", timeout=10, headers={
        "Accept": "application/vnd.oci.image.manifest.v1+json"}).json()
    layer = next(x for x in manifest["layers"] if x["mediaType"] == GGUF_MEDIA)
    size_mb = layer["size"] / 1e6
    url = f"http://{host}/v2/{REPO}/blobs/{layer['digest']}"
    counter = iter(range(1_000_000))

    def ours() -> float:
        root = tmp / f"store-{next(counter)}"
        start = time.perf_counter()
        Store(root).pull(ref, progress=False)
        seconds = time.perf_counter() - start
        shutil.rmtree(root, ignore_errors=True)
        return size_mb / seconds

    def theirs() -> float:
        start = time.perf_counter()
        subprocess.run(["curl", "-sf", "-o", "/dev/null", url], check=True, timeout=300)
        return size_mb / (time.perf_counter() - start)

    if shutil.which("curl") is None:
        out = paired([ours], ctx.budget.reps, ctx.deadline(), ctx.settle)
        ctx.results.add(Measure(PART, "pull", "mr-store", "MB/s", out[0], {"blob_mb": size_mb}))
        ctx.results.note(PART, "curl is not installed: mr figures only")
        return
    out = paired([theirs, ours], ctx.budget.reps, ctx.deadline(), ctx.settle)
    params = {"blob_mb": round(size_mb, 1), "registry": "docker-registry on loopback"}
    mine = ctx.results.add(Measure(PART, "pull", "mr-store", "MB/s", out[1], params,
                                   note="fresh store each time: download, sha256, verify, rename"))
    other = ctx.results.add(Measure(PART, "pull", "curl", "MB/s", out[0], params,
                                    note="the weights blob to /dev/null"))
    ctx.results.add_ratio(ratio(PART, "mr-store / curl MB/s", mine, other, ">= 0.80"))


def _start_registry(binary: str, tmp: Path) -> tuple[str, subprocess.Popen[bytes]]:
    import requests

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = tmp / "registry.yml"
    config.write_text("version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n"
                      f"storage:\n  filesystem:\n    rootdirectory: {tmp / 'registry'}\n"
                      f"http:\n  addr: 127.0.0.1:{port}\n")
    proc = subprocess.Popen([binary, "serve", str(config)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    host = f"127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if requests.get(f"http://{host}/v2/", timeout=1).status_code == 200:
                return host, proc
        except requests.ConnectionError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("docker-registry did not start")
