"""Local store verbs: package, tag, rm (+GC), list, inspect, df, bundles, crash consistency."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from mr.errors import InvalidArgumentError, ModelNotFoundError
from mr.store import Store, artifact, package_gguf
from mr.store.errors import ConflictError


def cli(*args: str):
    from mr.cli import cli as group

    return CliRunner().invoke(group, list(args), catch_exceptions=True)


def blob_names(store: Store) -> set[str]:
    return {p.name for p in (store.root / "blobs" / "sha256").iterdir()}


# -- package -----------------------------------------------------------------------------------
def test_package_builds_dmr_artifact(store: Store, make_gguf, tmp_path: Path) -> None:
    src = make_gguf(rows=32)
    lic = tmp_path / "LICENSE"
    lic.write_text("MIT")
    tpl = tmp_path / "t.jinja"
    tpl.write_text("{{ messages }}")
    model = package_gguf(store, src, "myorg/tiny:v1", licenses=[lic], chat_template=tpl,
                         context_size=2048)
    assert model.tags == ["docker.io/myorg/tiny:v1"]
    raw = store.manifest_bytes(model)
    assert "sha256:" + __import__("hashlib").sha256(raw).hexdigest() == model.id
    m = json.loads(raw)
    assert m["schemaVersion"] == 2 and m["mediaType"] == artifact.OCI_MANIFEST
    assert m["config"]["mediaType"] == artifact.CONFIG_DOCKER
    assert [layer["mediaType"] for layer in m["layers"]] == [
        artifact.GGUF, artifact.LICENSE, artifact.CHAT_TEMPLATE]
    config = json.loads(store.blobs.path(m["config"]["digest"]).read_bytes())
    c = config["config"]
    assert c["format"] == "gguf" and c["architecture"] == "llama" and c["quantization"] == "F32"
    assert c["parameters"] == "2.05K" and c["context_size"] == 2048
    assert re.fullmatch(r"\d+\.\d\dKiB", c["size"])
    assert c["gguf"]["llama.context_length"] == "4096"
    assert all(isinstance(v, str) for v in c["gguf"].values())
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", config["descriptor"]["created"])
    assert config["rootfs"] == {"type": "rootfs", "diff_ids": [d["digest"] for d in m["layers"]]}
    # blobs are read-only files named by digest; the index lists layers then config
    gguf_digest = m["layers"][0]["digest"]
    assert store.blobs.path(gguf_digest).read_bytes() == src.read_bytes()
    assert not os.access(store.blobs.path(gguf_digest), os.W_OK) or os.geteuid() == 0
    assert store.blobs.path(gguf_digest).stat().st_mode & 0o777 == 0o444
    index = json.loads((store.root / "models.json").read_text())
    files = [d["digest"] for d in m["layers"]] + [m["config"]["digest"]]
    assert index["models"][0]["files"] == files
    assert json.loads((store.root / "layout.json").read_text()) == {"version": "1.0.0"}


def test_bundle_hard_links(store: Store, make_gguf, tmp_path: Path) -> None:
    tpl = tmp_path / "t.jinja"
    tpl.write_text("T")
    model = package_gguf(store, make_gguf(), "m", chat_template=tpl)
    gguf_path = model.gguf_path
    hexid = model.id.split(":")[1]
    assert gguf_path == store.root / "bundles" / "sha256" / hexid / "model" / "model.gguf"
    assert os.path.samefile(gguf_path, store.blobs.path(model.manifest.weights[0].digest))
    assert model.chat_template_path is not None and model.chat_template_path.read_text() == "T"
    assert (model.bundle_path / "config.json").is_file()
    assert model.mmproj_path is None
    plain = package_gguf(store, make_gguf(), "n")
    assert plain.chat_template_path is None
    # a damaged bundle is rebuilt
    os.unlink(gguf_path)
    assert store.resolve("m").gguf_path.exists()


def test_sharded_gguf(store: Store, make_gguf) -> None:
    shards = [make_gguf(f"big-{i:05d}-of-00003.gguf", split=(i - 1, 3), rows=8) for i in (1, 2, 3)]
    model = package_gguf(store, shards[0], "sharded")
    assert [d.mediaType for d in model.manifest.layers] == [artifact.GGUF] * 3
    assert model.config["parameters"] == "1.54K"
    names = [p.name for p in model.gguf_paths]
    assert names == [f"model-{i:05d}-of-00003.gguf" for i in (1, 2, 3)]
    assert model.gguf_path.name == "model-00001-of-00003.gguf"
    for path, src in zip(model.gguf_paths, shards, strict=True):
        assert path.read_bytes() == src.read_bytes()


def test_package_refuses_bad_input(store: Store, tmp_path: Path, make_gguf) -> None:
    bogus = tmp_path / "x.gguf"
    bogus.write_bytes(b"not a gguf at all, definitely not" * 4)
    with pytest.raises(InvalidArgumentError, match="GGUF"):
        package_gguf(store, bogus, "x")
    with pytest.raises(InvalidArgumentError, match="not found"):
        package_gguf(store, tmp_path / "missing.gguf", "x")
    with pytest.raises(InvalidArgumentError):
        package_gguf(store, make_gguf(), "x@sha256:" + "a" * 64)
    with pytest.raises(InvalidArgumentError):
        package_gguf(store, make_gguf(), "x", context_size=0)
    assert store.list() == []


# -- tag / rm ----------------------------------------------------------------------------------
def test_tag_moves_between_models(store: Store, make_gguf) -> None:
    a = package_gguf(store, make_gguf(), "a")
    b = package_gguf(store, make_gguf(), "b")
    store.tag("a", "shared:v1")
    assert store.resolve("shared:v1").id == a.id
    store.tag(b.id, "shared:v1")
    assert store.resolve("shared:v1").id == b.id
    assert store.resolve("a").tags == ["docker.io/ai/a:latest"]
    assert sorted(store.resolve(b.id).tags) == ["docker.io/ai/b:latest", "docker.io/ai/shared:v1"]
    # packaging onto an existing tag moves it too
    c = package_gguf(store, make_gguf(), "a")
    assert store.resolve("a").id == c.id
    assert store.resolve(a.id).tags == []
    with pytest.raises(ModelNotFoundError):
        store.tag("nope", "x")


def test_rm_keeps_shared_blobs(store: Store, make_gguf, tmp_path: Path) -> None:
    src = make_gguf()
    lic = tmp_path / "L"
    lic.write_text("license")
    a = package_gguf(store, src, "a", licenses=[lic])
    b = package_gguf(store, src, "b")
    shared = a.manifest.weights[0].digest
    assert shared == b.manifest.weights[0].digest
    a.gguf_path  # noqa: B018 - make the bundle
    assert store.remove("a") == ["Untagged: a", f"Deleted: {a.id}"]
    names = blob_names(store)
    assert shared.split(":")[1] in names
    assert a.manifest.config.digest.split(":")[1] not in names
    assert a.manifest.first_of(artifact.LICENSE).digest.split(":")[1] not in names
    assert not store.layout.manifest_path(a.id).exists()
    assert not store.layout.bundle_dir(a.id).exists()
    assert store.resolve("b").gguf_path.read_bytes() == src.read_bytes()
    store.remove("b")
    assert {n for n in blob_names(store) if not n.startswith(".")} == set()
    with pytest.raises(ModelNotFoundError, match="no such model"):
        store.remove("a")


def test_rm_multi_tagged_id_needs_force(store: Store, make_gguf) -> None:
    m = package_gguf(store, make_gguf(), "one")
    store.tag("one", "two")
    with pytest.raises(ConflictError, match="must be forced") as info:
        store.remove(m.id)
    assert info.value.http_status == 409
    with pytest.raises(ConflictError):
        store.remove(m.short_id)
    assert store.remove("two") == ["Untagged: two"]  # a tag only untags while others remain
    store.tag("one", "two")
    assert store.remove(m.id, force=True) == ["Untagged: one", "Untagged: two", f"Deleted: {m.id}"]
    assert store.list() == []


def test_rm_never_collects_what_a_pull_needs(store: Store, make_gguf) -> None:
    m = package_gguf(store, make_gguf(), "m")
    weights = m.manifest.weights[0].digest
    lease = store.lease([weights])
    try:
        store.remove("m")
        assert store.blobs.has(weights)
    finally:
        lease.release()
    # the lease is gone: a later GC of another model may collect freely
    from mr.store import leases

    assert leases.protected_digests(store.layout) == set()


def test_stale_lease_is_swept(store: Store) -> None:
    store.layout.ensure()
    d = store.layout.locks_dir / "leases"
    (d / "dead.json").write_text(json.dumps({"digests": ["sha256:" + "a" * 64]}))
    from mr.store import leases

    assert leases.protected_digests(store.layout) == set()
    assert not (d / "dead.json").exists()


# -- crash consistency -------------------------------------------------------------------------
def test_half_written_models_are_invisible(store: Store, make_gguf) -> None:
    m = package_gguf(store, make_gguf(), "m")
    # an index entry whose manifest is missing (crash during rm) is not listed
    store.layout.manifest_path(m.id).rename(store.root / "saved")
    assert store.list() == []
    with pytest.raises(ModelNotFoundError):
        store.resolve("m")
    (store.root / "saved").rename(store.layout.manifest_path(m.id))
    assert [x.id for x in store.list()] == [m.id]
    # a manifest without an index entry (crash before the index write) is not listed either
    index = store.layout.read_index()
    index.remove(m.id)
    store.layout.write_index(index)
    assert store.list() == []


# -- CLI: list / inspect / df / rm / tag -------------------------------------------------------
def test_list_formats(store: Store, make_gguf) -> None:
    m = package_gguf(store, make_gguf(rows=32), "smol", context_size=1024)
    store.tag("smol", "smol:v2")
    orphan = package_gguf(store, make_gguf(), "orphan")
    store.remove("orphan")  # last tag gone: deleted
    untagged = package_gguf(store, make_gguf(), "gone")
    package_gguf(store, make_gguf(), "gone")  # moves the tag: `untagged` keeps no tag
    r = cli("list")
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert re.split(r"\s{2,}", lines[0]) == ["MODEL NAME", "PARAMETERS", "QUANTIZATION",
                                             "ARCHITECTURE", "MODEL ID", "CREATED", "CONTEXT",
                                             "SIZE"]
    rows = {re.split(r"\s{2,}", line)[0]: re.split(r"\s{2,}", line) for line in lines[1:]}
    assert set(rows) == {"smol", "smol:v2", "gone", "<none>"}
    assert rows["smol"][1:5] == ["2.05K", "F32", "llama", m.short_id]
    assert rows["smol"][5].endswith("ago") and rows["smol"][6] == "1024"
    assert rows["<none>"][4] == untagged.short_id
    assert orphan.short_id not in r.output
    # header columns line up with the values
    assert lines[0].index("MODEL ID") == lines[1].index(m.short_id)
    assert cli("ls").output == r.output

    j = cli("list", "--json")
    data = json.loads(j.output)
    assert {d["id"] for d in data} == {x.id for x in store.list()}
    entry = next(d for d in data if d["id"] == m.id)
    assert set(entry) == {"id", "tags", "created", "config"}
    assert sorted(entry["tags"]) == ["docker.io/ai/smol:latest", "docker.io/ai/smol:v2"]
    assert entry["config"]["context_size"] == 1024 and isinstance(entry["created"], int)

    q = cli("list", "-q").output.split()
    assert sorted(q) == sorted(x.short_id for x in store.list())

    o = json.loads(cli("list", "--openai").output)
    assert o["object"] == "list"
    assert {d["id"] for d in o["data"]} >= {"ai/smol", "ai/smol:v2", "ai/gone", untagged.id}


def test_inspect(store: Store, make_gguf) -> None:
    m = package_gguf(store, make_gguf(), "insp")
    r = cli("inspect", "insp")
    assert r.exit_code == 0
    assert json.loads(r.output) == json.loads(json.dumps(m.to_dict()))
    assert json.loads(cli("inspect", m.short_id).output)["id"] == m.id
    assert json.loads(cli("inspect", "--openai", "insp").output)["id"] == "ai/insp"
    missing = cli("inspect", "nope")
    assert isinstance(missing.exception, ModelNotFoundError) and missing.exception.exit_code == 4


def test_df(store: Store, make_gguf) -> None:
    m = package_gguf(store, make_gguf(rows=64), "d")
    partial = store.layout.partial_path("sha256:" + "c" * 64)
    partial.write_bytes(b"x" * 1000)
    usage = store.df()
    assert usage.models == 1
    assert usage.models_bytes == sum(d.size for d in m.manifest.blobs)
    assert usage.partial_bytes == 1000 and usage.reclaimable_bytes == 1000
    r = cli("df")
    assert r.exit_code == 0 and "Models" in r.output and "RECLAIMABLE" in r.output
    assert json.loads(cli("df", "--json").output)["partial_bytes"] == 1000


def test_cli_rm_and_tag(store: Store, make_gguf) -> None:
    m = package_gguf(store, make_gguf(), "x")
    r = cli("tag", "x", "y:1")
    assert r.exit_code == 0 and "tagged successfully" in r.output
    r = cli("rm", m.id)
    assert isinstance(r.exception, ConflictError) and r.exception.exit_code == 11
    r = cli("rm", "-f", m.id, "missing")
    assert r.output.splitlines()[:3] == ["Untagged: x", "Untagged: y:1", f"Deleted: {m.id}"]
    assert isinstance(r.exception, ModelNotFoundError)


def test_cli_errors_are_one_line(store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    from mr.cli import cli as group
    from mr.cli.errors import run_cli

    assert run_cli(group, ["rm", "nope"]) == 4
    assert capsys.readouterr().err.strip() == "Error: no such model: nope"
    assert run_cli(group, ["inspect", "sha256:../../x"]) == 2
    assert capsys.readouterr().err.startswith("Error: invalid digest")
    assert run_cli(group, ["package", "--gguf", "/nonexistent.gguf", "x"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "/nonexistent" not in err


def test_cli_package(store: Store, make_gguf) -> None:
    r = cli("package", "--gguf", str(make_gguf()), "--context-size", "512", "pk:v1")
    assert r.exit_code == 0, r.output
    assert "pk:v1" in r.output
    assert store.resolve("pk:v1").config["context_size"] == 512


def test_mmproj_layer(store: Store, make_gguf) -> None:
    proj = make_gguf(arch="clip")
    model = package_gguf(store, make_gguf(), "vision", mmproj=proj)
    assert [d.mediaType for d in model.manifest.layers] == [artifact.GGUF, artifact.MMPROJ]
    assert model.mmproj_path is not None and model.mmproj_path.read_bytes() == proj.read_bytes()


def test_dmr_written_store_is_read_and_preserved(store: Store, make_gguf) -> None:
    """An existing Docker Model Runner store: older config spellings, unknown index fields."""
    data = make_gguf().read_bytes()
    blobs = store.root / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    config = json.dumps({"config": {"format": "gguf", "quantization": "Q4_K_M",
                                    "parameters": "361.82 M", "architecture": "llama",
                                    "size": "256.35 MiB", "gguf": {"general.name": "x"}},
                         "descriptor": {"created": "2025-02-03T04:05:06.123456789Z"},
                         "rootfs": {"type": "rootfs", "diff_ids": []}}).encode()
    digest = "sha256:" + __import__("hashlib").sha256(data).hexdigest()
    cdigest = "sha256:" + __import__("hashlib").sha256(config).hexdigest()
    (blobs / digest[7:]).write_bytes(data)
    (blobs / cdigest[7:]).write_bytes(config)
    manifest = json.dumps({"schemaVersion": 2, "mediaType": artifact.OCI_MANIFEST,
                           "config": {"mediaType": artifact.CONFIG_DOCKER, "digest": cdigest,
                                      "size": len(config)},
                           "layers": [{"mediaType": artifact.GGUF, "digest": digest,
                                       "size": len(data)}]}, separators=(",", ":")).encode()
    mid = "sha256:" + __import__("hashlib").sha256(manifest).hexdigest()
    (store.root / "manifests" / "sha256").mkdir(parents=True)
    (store.root / "manifests" / "sha256" / mid[7:]).write_bytes(manifest)
    (store.root / "layout.json").write_text('{"version":"1.0.0"}')
    (store.root / "models.json").write_text(json.dumps({"models": [
        {"id": mid, "tags": ["docker.io/ai/gemma3:latest"], "files": [digest, cdigest],
         "future": 1}], "other": True}))
    model = store.resolve("gemma3")
    assert model.config["parameters"] == "361.82 M" and model.created.year == 2025
    rows = cli("list").output.splitlines()
    assert rows[1].split()[:3] == ["gemma3", "361.82", "M"]
    assert model.gguf_path.read_bytes() == data
    store.tag("gemma3", "g:v2")
    index = json.loads((store.root / "models.json").read_text())
    assert index["other"] is True and index["models"][0]["future"] == 1


def test_import_default_model(store: Store, monkeypatch, make_gguf) -> None:
    from mr import default_model
    from mr.store import import_default_model

    src = make_gguf()
    monkeypatch.setattr(default_model, "fetch", lambda: src)
    first = import_default_model(store)
    assert first.tags == ["docker.io/ai/smollm2:latest"]
    assert import_default_model(store).id == first.id


def test_the_store_is_apart_from_the_transfer_code(tmp_path: Path) -> None:
    """`Store` is the local content and index (containerd's shape): pull, push and package are
    functions over it, and using it loads no registry client (oras, requests)."""
    import subprocess
    import sys

    from support.env import subprocess_env

    assert not {"pull", "push", "package"} & set(dir(Store))
    code = ("import sys\nfrom mr.store import Store\n"
            f"store = Store({str(tmp_path / 'models')!r})\nstore.list(); store.df()\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('oras', 'requests')\n"
            "             or m in ('mr.store.registry', 'mr.store.pull', 'mr.store.push')))")
    done = subprocess.run([sys.executable, "-c", code], env=subprocess_env(), capture_output=True,
                          text=True, timeout=60, check=True)
    assert done.stdout.strip() == "[]"
