"""Against a real registry (Debian's docker-registry): push, pull, round trips, concurrency."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from mr.store import Store, artifact, package_gguf
from mr.store.pull import pull
from mr.store.push import push
from support.env import subprocess_env


def sha256_file(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def cli(*args: str):
    from mr.cli import cli as group

    return CliRunner().invoke(group, list(args), catch_exceptions=True)


def check_artifact(registry, repo: str, tag: str, model_id: str) -> dict:
    """The manifest in the registry is DMR's: media types, digests, config fields."""
    resp = registry.manifest(repo, tag)
    assert resp.status_code == 200
    assert "sha256:" + hashlib.sha256(resp.content).hexdigest() == model_id
    assert resp.headers["Docker-Content-Digest"] == model_id
    m = resp.json()
    assert m["schemaVersion"] == 2 and m["mediaType"] == artifact.OCI_MANIFEST
    assert m["config"]["mediaType"] == artifact.CONFIG_DOCKER
    assert m["layers"][0]["mediaType"] == artifact.GGUF
    for d in [m["config"], *m["layers"]]:
        body = registry.blob(repo, d["digest"])
        assert len(body) == d["size"]
        assert "sha256:" + hashlib.sha256(body).hexdigest() == d["digest"]
    config = json.loads(registry.blob(repo, m["config"]["digest"]))
    assert set(config) == {"config", "descriptor", "rootfs"}
    assert {"format", "quantization", "parameters", "architecture", "size", "gguf"} <= set(
        config["config"])
    assert config["rootfs"]["type"] == "rootfs"
    assert config["rootfs"]["diff_ids"] == [d["digest"] for d in m["layers"]]
    return config


def test_package_push_rm_pull_round_trip(registry, store: Store, make_gguf, tmp_path) -> None:
    src = make_gguf(rows=256)
    ref = f"{registry.host}/test/tiny:v1"
    lic = tmp_path / "LICENSE"
    lic.write_text("Apache-2.0")
    r = cli("package", "--gguf", str(src), "--license", str(lic), "--context-size", "1024",
            "--push", ref)
    assert r.exit_code == 0, r.output
    assert "Model pushed successfully" in r.output
    model = store.resolve(ref)
    config = check_artifact(registry, "test/tiny", "v1", model.id)
    assert config["config"]["context_size"] == 1024

    r = cli("rm", ref)
    assert r.output.splitlines() == [f"Untagged: {ref}", f"Deleted: {model.id}"]
    assert store.list() == []
    assert [p for p in (store.root / "blobs" / "sha256").iterdir()] == []

    r = cli("pull", ref)
    assert r.exit_code == 0, r.output
    assert "Model pulled successfully" in r.output
    pulled = store.resolve(ref)
    assert pulled.id == model.id and pulled.tags == [ref]
    assert pulled.gguf_path.read_bytes() == src.read_bytes()
    assert pulled.config == model.config
    assert [p.name for p in pulled.license_paths] == [model.manifest.layers[1].digest[7:]]

    r = cli("pull", ref)
    assert r.exit_code == 0 and "already present" in r.output


def test_push_tag_and_shared_layers(registry, store: Store, make_gguf, tmp_path) -> None:
    src = make_gguf(rows=128)
    a = package_gguf(store, src, f"{registry.host}/test/shared:a")
    lic = tmp_path / "L"
    lic.write_text("x")
    b = package_gguf(store, src, f"{registry.host}/test/shared:b", licenses=[lic])
    assert push(store, f"{registry.host}/test/shared:a") == a.id
    assert push(store, b.id, target=f"{registry.host}/test/shared:b") == b.id

    other = Store(tmp_path / "other")
    first = pull(other, f"{registry.host}/test/shared:a")
    assert first.downloaded and first.bytes_downloaded >= src.stat().st_size
    second = pull(other, f"{registry.host}/test/shared:b")
    # the GGUF layer is shared: only the license and the config come down
    assert second.bytes_downloaded < src.stat().st_size
    assert second.model.gguf_path.read_bytes() == src.read_bytes()
    # push under a new tag, pull by digest
    store.tag(a.id, f"{registry.host}/test/shared:c")
    r = cli("push", f"{registry.host}/test/shared:c")
    assert r.exit_code == 0, r.output
    pinned = pull(other, f"{registry.host}/test/shared@{a.id}")
    assert pinned.model.id == a.id and not pinned.downloaded


def test_pull_unknown_model(registry, store: Store) -> None:
    from mr.errors import ModelNotFoundError

    with pytest.raises(ModelNotFoundError, match="model not found"):
        pull(store, f"{registry.host}/test/nothing-here:v1")
    assert store.list() == []


def test_four_processes_pull_at_once(registry, store: Store, make_gguf, tmp_path: Path) -> None:
    src = make_gguf(rows=32 * 1024)  # 8 MiB, so the downloads overlap
    ref = f"{registry.host}/test/concurrent:v1"
    model = package_gguf(store, src, ref)
    push(store, ref)
    root = tmp_path / "shared-store"
    code = textwrap.dedent(f"""
        import sys
        from mr.store import Store
        from mr.store.pull import pull
        r = pull(Store({str(root)!r}), {ref!r})
        print(r.model.id, r.bytes_downloaded)
    """)
    procs = [subprocess.Popen([sys.executable, "-c", code], env=subprocess_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(4)]
    results = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, results
    ids = {out.split()[0] for out, _ in results}
    assert ids == {model.id}
    downloaded = [int(out.split()[1]) for out, _ in results]
    assert sum(downloaded) == sum(d.size for d in model.manifest.blobs)  # each blob once
    index = json.loads((root / "models.json").read_text())
    assert [e["id"] for e in index["models"]] == [model.id]
    assert index["models"][0]["tags"] == [ref]
    blobs = sorted(p.name for p in (root / "blobs" / "sha256").iterdir())
    assert blobs == sorted(d[7:] for d in index["models"][0]["files"])  # no partials, no temps


@pytest.mark.slow
def test_real_model_end_to_end(registry, store: Store, tmp_path: Path) -> None:
    from mr import default_model

    gguf = default_model.fetch()
    ref = f"{registry.host}/ai/smollm2:latest"
    model = package_gguf(store, gguf, ref)
    assert model.config["parameters"] == "134.52M"
    assert model.config["quantization"] == "Q4_1"
    assert model.config["architecture"] == "llama"
    assert model.config["size"] == "93.81MiB"
    assert model.config["gguf"]["llama.context_length"] == "8192"
    push(store, ref)
    config = check_artifact(registry, "ai/smollm2", "latest", model.id)
    assert config["config"]["gguf"]["general.architecture"] == "llama"
    assert store.remove(ref)[-1] == f"Deleted: {model.id}"
    pulled = pull(store, ref).model
    assert pulled.id == model.id
    assert sha256_file(pulled.gguf_path) == "sha256:" + default_model.SHA256
    assert pulled.chat_template_path is None
