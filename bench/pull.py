"""Pull speed: mr's store pulling a model from a loopback registry vs a plain `curl` of the same
weights blob, A B C A B C (target >= 0.8), in both artifact formats mr reads: Docker Model
Runner's and Ollama's. Run it with `python -m bench pull`.

The registry is Debian's `docker-registry` on a free 127.0.0.1 port with storage in a temporary
folder; the model is packaged and pushed there first (DMR format), then an Ollama-format manifest
(`application/vnd.ollama.image.model` plus a params layer) naming the same weights blob. Each mr
pull goes into a fresh store, so nothing is a cache hit; curl writes to /dev/null, so it pays no
hashing or disk write: the ratio is what verification and the atomic store cost on top of the
transfer.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.core import Measure, paired, ratio

if TYPE_CHECKING:
    from bench.context import Context

PART = "pull"
REPO = "bench/model"
GGUF_MEDIA = "application/vnd.docker.ai.gguf.v3"
OLLAMA_TAG = "ollama"


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

    from mr.store import Store, package_gguf
    from mr.store.pull import pull as pull_model
    from mr.store.push import push

    ref = f"{host}/{REPO}:latest"
    source = Store(tmp / "source")
    package_gguf(source, ctx.model, ref)
    push(source, ref)
    manifest = requests.get(f"http://{host}/v2/{REPO}/manifests/latest", timeout=10, headers={
        "Accept": "application/vnd.oci.image.manifest.v1+json"}).json()
    layer = next(x for x in manifest["layers"] if x["mediaType"] == GGUF_MEDIA)
    ollama_ref = _push_ollama(host, layer)
    size_mb = layer["size"] / 1e6
    url = f"http://{host}/v2/{REPO}/blobs/{layer['digest']}"
    counter = iter(range(1_000_000))

    def pull(reference: str) -> Callable[[], float]:
        def ours() -> float:
            root = tmp / f"store-{next(counter)}"
            start = time.perf_counter()
            pull_model(Store(root), reference, progress=False)
            seconds = time.perf_counter() - start
            shutil.rmtree(root, ignore_errors=True)
            return size_mb / seconds
        return ours

    def theirs() -> float:
        start = time.perf_counter()
        subprocess.run(["curl", "-sf", "-o", "/dev/null", url], check=True, timeout=300)
        return size_mb / (time.perf_counter() - start)

    params = {"blob_mb": round(size_mb, 1), "registry": "docker-registry on loopback"}
    if shutil.which("curl") is None:
        out = paired([pull(ref), pull(ollama_ref)], ctx.budget.reps, ctx.deadline(), ctx.settle)
        for (variant, _), values in zip(_VARIANTS, out, strict=True):
            ctx.results.add(Measure(PART, "pull", variant, "MB/s", values, params))
        ctx.results.note(PART, "curl is not installed: mr figures only")
        return
    out = paired([theirs, pull(ref), pull(ollama_ref)], ctx.budget.reps, ctx.deadline(), ctx.settle)
    other = ctx.results.add(Measure(PART, "pull", "curl", "MB/s", out[0], params,
                                    note="the weights blob to /dev/null"))
    for (variant, what), values in zip(_VARIANTS, out[1:], strict=True):
        note = f"{what}; fresh store each time: download, sha256, verify, rename"
        mine = ctx.results.add(Measure(PART, "pull", variant, "MB/s", values, params, note=note))
        ctx.results.add_ratio(ratio(PART, f"{variant} / curl MB/s", mine, other, ">= 0.80"))


_VARIANTS = (("mr-store", "DMR artifact"), ("mr-store-ollama", "Ollama artifact"))


def _push_ollama(host: str, weights: dict[str, Any]) -> str:
    """An Ollama-format manifest for the weights already in the repository (the registry keeps
    one blob per digest, so only the small config and params layers are uploaded): what
    `ollama push` writes. Returns its reference."""
    from mr.store import ollama
    from mr.store.artifact import DOCKER_MANIFEST_V2
    from mr.store.digest import of_bytes
    from mr.store.reference import parse
    from mr.store.registry import RegistryClient

    client = RegistryClient(host)
    params = json.dumps({"temperature": 0.7, "stop": ["<|im_end|>"]}).encode()
    config = json.dumps({"model_format": "gguf", "model_family": "llama", "model_type": "135M",
                         "file_type": "Q4_1", "architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": [weights["digest"], of_bytes(params)]}
                         }).encode()
    for blob in (params, config):
        client.upload_blob(REPO, of_bytes(blob), len(blob), lambda blob=blob: blob)
    layers = [{"mediaType": ollama.MODEL, "digest": weights["digest"], "size": weights["size"]},
              {"mediaType": ollama.PARAMS, "digest": of_bytes(params), "size": len(params)}]
    manifest = json.dumps({"schemaVersion": 2, "mediaType": DOCKER_MANIFEST_V2,
                           "config": {"mediaType": ollama.CONFIG, "digest": of_bytes(config),
                                      "size": len(config)},
                           "layers": layers}).encode()
    reference = f"{host}/{REPO}:{OLLAMA_TAG}"
    client.put_manifest(parse(reference), manifest, DOCKER_MANIFEST_V2)
    return reference


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
