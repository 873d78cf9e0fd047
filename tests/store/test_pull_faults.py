"""Pulls against a misbehaving registry: verification, resume, retries, limits, auth, paths."""

from __future__ import annotations

import base64
import errno
import io
import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from mr.store import Store, artifact, package_gguf
from mr.store.errors import (
    DigestMismatchError,
    DiskFullError,
    InvalidManifestError,
    RegistryAuthError,
    RegistryError,
)
from mr.store.pull import pull
from mr.store.push import push
from support.env import subprocess_env
from support.registry_stub import Fault, StubRegistry, sha256


@pytest.fixture
def served(stub: StubRegistry, make_gguf, tmp_path: Path):
    """A 1 MiB model packaged elsewhere and served by the stub as test/m:v1."""
    source = Store(tmp_path / "source")
    model = package_gguf(source, make_gguf(rows=4096), "m")
    stub.add_from_store(source, "m", "test/m", "v1")
    return model


def ref(stub: StubRegistry) -> str:
    return f"{stub.host}/test/m:v1"


def weights(model) -> str:
    return model.manifest.weights[0].digest


def assert_nothing_committed(store: Store, model) -> None:
    assert store.list() == []
    assert not store.layout.manifest_path(model.id).exists()
    assert not store.blobs.has(weights(model))
    assert not store.layout.partial_path(weights(model)).exists()


# -- verification ------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["corrupt", "short", "pad"])
def test_bad_bytes_are_refused(kind: str, stub, served, store, fast_client) -> None:
    stub.faults.append(Fault(f"/blobs/{weights(served)}", kind, times=99, cut=1000))
    want = f"digest mismatch: want {weights(served)} got sha256:"
    with pytest.raises(DigestMismatchError, match=want):
        pull(store, ref(stub), client=fast_client(stub.host))
    assert_nothing_committed(store, served)
    # the next pull is not a cache hit: it downloads again and succeeds
    stub.faults.clear()
    before = len(stub.requests_for("/blobs/" + weights(served)))
    result = pull(store, ref(stub), client=fast_client(stub.host))
    assert result.downloaded and result.bytes_downloaded >= served.manifest.weights[0].size
    assert len(stub.requests_for("/blobs/" + weights(served))) == before + 1
    assert store.blobs.verify(weights(served))


def test_manifest_digest_is_checked(stub, served, store, fast_client) -> None:
    pinned = f"{stub.host}/test/m@sha256:{'0' * 64}"
    stub.manifests["test/m"]["sha256:" + "0" * 64] = stub.manifests["test/m"]["v1"]
    with pytest.raises(DigestMismatchError):
        pull(store, pinned, client=fast_client(stub.host))
    assert store.list() == []


# -- resume ------------------------------------------------------------------------------------
def test_cut_stream_resumes_with_range(stub, served, store, fast_client) -> None:
    stub.faults.append(Fault(f"/blobs/{weights(served)}", "truncate", times=1, cut=300_000))
    result = pull(store, ref(stub), client=fast_client(stub.host))
    gets = stub.requests_for("/blobs/" + weights(served))
    assert len(gets) == 2 and gets[0].headers.get("Range") is None
    start = int(gets[1].headers["Range"].removeprefix("bytes=").removesuffix("-"))
    assert 0 < start <= 300_000 and gets[1].status == 206
    assert result.model.gguf_path.exists() and store.blobs.verify(weights(served))


def test_partial_on_disk_resumes(stub, served, store, fast_client) -> None:
    store.layout.ensure()
    data = stub.blobs[weights(served)]
    store.layout.partial_path(weights(served)).write_bytes(data[:400_000])
    result = pull(store, ref(stub), client=fast_client(stub.host))
    gets = stub.requests_for("/blobs/" + weights(served))
    assert [g.headers.get("Range") for g in gets] == ["bytes=400000-"]
    assert result.bytes_downloaded < len(data)
    assert store.blobs.verify(weights(served))


def test_registry_ignoring_range_restarts(stub, served, store, fast_client) -> None:
    store.layout.ensure()
    data = stub.blobs[weights(served)]
    store.layout.partial_path(weights(served)).write_bytes(data[:400_000])
    stub.faults.append(Fault(f"/blobs/{weights(served)}", "ignore_range", times=9))
    pull(store, ref(stub), client=fast_client(stub.host))
    gets = stub.requests_for("/blobs/" + weights(served))
    assert len(gets) == 1 and gets[0].status == 200
    assert store.blobs.path(weights(served)).read_bytes() == data  # never appended


def test_tampered_partial_is_caught(stub, served, store, fast_client) -> None:
    store.layout.ensure()
    data = stub.blobs[weights(served)]
    store.layout.partial_path(weights(served)).write_bytes(b"\xff" * 400_000)
    pull(store, ref(stub), client=fast_client(stub.host))
    gets = stub.requests_for("/blobs/" + weights(served))
    assert [g.headers.get("Range") for g in gets] == ["bytes=400000-", None]
    assert store.blobs.path(weights(served)).read_bytes() == data


def test_partial_longer_than_blob_starts_over(stub, served, store, fast_client) -> None:
    store.layout.ensure()
    store.layout.partial_path(weights(served)).write_bytes(b"\0" * (2 << 20))
    pull(store, ref(stub), client=fast_client(stub.host))
    assert store.blobs.verify(weights(served))


def test_stalled_transfer_times_out_and_resumes(stub, served, store, fast_client) -> None:
    stub.faults.append(Fault(f"/blobs/{weights(served)}", "slow", times=1, delay=2.0))
    started = time.monotonic()
    pull(store, ref(stub), client=fast_client(stub.host, read_timeout=0.3))
    assert time.monotonic() - started < 1.9
    gets = stub.requests_for("/blobs/" + weights(served))
    assert len(gets) == 2  # the stalled GET timed out and a new one finished the job
    assert store.blobs.verify(weights(served))


def test_killed_pull_resumes(stub, served, store) -> None:
    stub.faults.append(Fault(f"/blobs/{weights(served)}", "slow", times=1, delay=0.05))
    code = textwrap.dedent(f"""
        from mr.store import Store
        from mr.store.pull import pull
        pull(Store({str(store.root)!r}), {ref(stub)!r})
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], env=subprocess_env())
    partial = store.layout.partial_path(weights(served))
    deadline = time.monotonic() + 30
    while not (partial.exists() and partial.stat().st_size > 100_000):
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.02)
    proc.kill()
    proc.wait()
    kept = partial.stat().st_size
    assert 0 < kept < len(stub.blobs[weights(served)])
    assert store.list() == []
    result = pull(store, ref(stub))
    gets = stub.requests_for("/blobs/" + weights(served))
    assert gets[-1].headers.get("Range", "").startswith("bytes=")
    assert int(gets[-1].headers["Range"][6:-1]) >= kept - (1 << 20)
    assert result.model.gguf_path.exists() and store.blobs.verify(weights(served))


# -- retries -----------------------------------------------------------------------------------
def test_429_with_retry_after_is_retried(stub, served, store, fast_client) -> None:
    stub.faults.append(Fault("/manifests/v1", "status", times=2, status=429,
                             headers={"Retry-After": "3"}))
    stub.faults.append(Fault(f"/blobs/{weights(served)}", "status", times=1, status=503))
    sleeps: list[float] = []
    result = pull(store, ref(stub), client=fast_client(stub.host, sleeps))
    assert result.downloaded
    assert sleeps[:2] == [3.0, 3.0]
    assert len(sleeps) == 3 and sleeps[2] <= 0.01  # the 503 got the capped backoff


def test_backoff_is_capped() -> None:
    from mr.store.registry import RetryPolicy, retry_after_seconds

    policy = RetryPolicy(base_s=1, cap_s=8, retry_after_cap_s=60)
    assert all(policy.delay(n) <= 8 for n in range(20))
    assert policy.delay(0, 99999) == 60
    assert retry_after_seconds("5") == 5
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0
    assert retry_after_seconds("soon") is None


def test_persistent_errors_give_up(stub, served, store, fast_client) -> None:
    stub.faults.append(Fault("/manifests/", "status", times=99, status=500))
    with pytest.raises(RegistryError, match="HTTP 500"):
        pull(store, ref(stub), client=fast_client(stub.host))


@pytest.mark.parametrize(("body", "shown"), [
    (b'{"errors": [{"code": "DENIED", "message": "no\\u0007 way"}]}', "HTTP 400: no way"),
    (b'{"errors": 5}', "HTTP 400"), (b"[1]", "HTTP 400"), (b"\xff\xfe", "HTTP 400"),
    (b'{"errors": [{"message": "' + b"x" * (1 << 20) + b'"}]}', "HTTP 400"),  # cut, not JSON
])
def test_an_error_body_of_any_shape_gives_its_status(body: bytes, shown: str, stub, served, store,
                                                     fast_client) -> None:
    stub.faults.append(Fault("/manifests/", "status", times=1, status=400, body=body))
    with pytest.raises(RegistryError) as info:
        pull(store, ref(stub), client=fast_client(stub.host))
    assert str(info.value).endswith(f"test/m:v1: {shown}")


def test_unreachable_registry(store, fast_client) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(RegistryError, match="cannot reach registry") as info:
        pull(store, f"127.0.0.1:{port}/x/y:z", client=fast_client(f"127.0.0.1:{port}"))
    assert info.value.exit_code == 8


# -- disk full ---------------------------------------------------------------------------------
def test_disk_full_precheck(stub, served, store, fast_client, monkeypatch) -> None:
    monkeypatch.setattr("mr.store.pull.free_bytes", lambda _p: 1000)
    with pytest.raises(DiskFullError, match=r"need 1\.\d\dMiB, free 1000B") as info:
        pull(store, ref(stub), client=fast_client(stub.host))
    assert info.value.exit_code == 9
    assert stub.requests_for("/blobs/") == []
    monkeypatch.undo()
    assert pull(store, ref(stub), client=fast_client(stub.host)).downloaded


def test_enospc_while_writing(stub, served, store, fast_client, monkeypatch) -> None:
    def full(_f, _data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("mr.store.blobs._write", full)
    with pytest.raises(DiskFullError, match="no space left on device: need"):
        pull(store, ref(stub), client=fast_client(stub.host))
    assert_nothing_committed(store, served)
    monkeypatch.undo()
    assert pull(store, ref(stub), client=fast_client(stub.host)).model.gguf_path.exists()


# -- hostile manifests -------------------------------------------------------------------------
def hostile(stub: StubRegistry, layers: list[dict], blobs: dict[str, bytes] | None = None) -> str:
    config = json.dumps({"config": {"format": "gguf"}, "descriptor": {},
                         "rootfs": {"type": "rootfs", "diff_ids": []}}).encode()
    doc = {"schemaVersion": 2, "mediaType": artifact.OCI_MANIFEST,
           "config": {"mediaType": artifact.CONFIG_DOCKER, "digest": sha256(config),
                      "size": len(config)},
           "layers": layers}
    stub.add("evil/m", "v1", json.dumps(doc).encode(), {sha256(config): config, **(blobs or {})})
    return f"{stub.host}/evil/m:v1"


def test_traversal_digest_in_manifest(stub, store, fast_client, tmp_path) -> None:
    before = set(tmp_path.rglob("*"))
    name = hostile(stub, [{"mediaType": artifact.GGUF, "digest": "sha256:../../../../x",
                           "size": 4}])
    with pytest.raises(InvalidManifestError, match="invalid digest"):
        pull(store, name, client=fast_client(stub.host))
    created = {p for p in set(tmp_path.rglob("*")) - before if "models" not in p.parts}
    assert created == set()
    assert stub.requests_for("/blobs/") == []


def test_title_annotation_is_never_a_path(stub, store, fast_client, make_gguf,
                                          tmp_path) -> None:
    data = make_gguf().read_bytes()
    name = hostile(stub, [{"mediaType": artifact.GGUF, "digest": sha256(data), "size": len(data),
                           "annotations": {artifact.TITLE: "../../../escaped.gguf",
                                           "org.cncf.model.filepath": "/tmp/escaped2"}}],
                   {sha256(data): data})
    model = pull(store, name, client=fast_client(stub.host)).model
    assert model.gguf_path.name == "model.gguf"
    assert model.gguf_path.read_bytes() == data
    assert not list(tmp_path.rglob("escaped*")) and not Path("/tmp/escaped2").exists()


def test_no_weights_layer(stub, store, fast_client) -> None:
    name = hostile(stub, [{"mediaType": artifact.LICENSE, "digest": sha256(b"x"), "size": 1}])
    with pytest.raises(InvalidManifestError, match="no GGUF"):
        pull(store, name, client=fast_client(stub.host))


def test_huge_manifest(stub, store, fast_client) -> None:
    stub.add("big/m", "v1", b"{" + b" " * (5 << 20) + b"}", {})
    with pytest.raises(InvalidManifestError, match="4 MiB"):
        pull(store, f"{stub.host}/big/m:v1", client=fast_client(stub.host))


# -- CNCF ModelPack ----------------------------------------------------------------------------
def test_cncf_modelpack_pull(stub, store, fast_client, make_gguf) -> None:
    data = make_gguf(rows=64).read_bytes()
    config = json.dumps({
        "descriptor": {"createdAt": "2025-05-01T12:00:00Z", "name": "tiny"},
        "config": {"architecture": "llama", "format": "gguf", "paramSize": "4.1K",
                   "quantization": "F32"},
        "modelfs": {"type": "layers", "diffIds": [sha256(data)]},
    }).encode()
    doc = {"schemaVersion": 2, "mediaType": artifact.OCI_MANIFEST,
           "artifactType": artifact.CNCF_ARTIFACT,
           "config": {"mediaType": artifact.CONFIG_CNCF, "digest": sha256(config),
                      "size": len(config)},
           "layers": [{"mediaType": artifact.CNCF_GGUF, "digest": sha256(data), "size": len(data),
                       "annotations": {"org.cncf.model.filepath": "tiny.gguf"}}]}
    stub.add("cncf/m", "v1", json.dumps(doc).encode(),
             {sha256(config): config, sha256(data): data})
    model = pull(store, f"{stub.host}/cncf/m:v1", client=fast_client(stub.host)).model
    assert model.config == {"format": "gguf", "architecture": "llama", "parameters": "4.1K",
                            "quantization": "F32"}
    assert model.created is not None and model.created.year == 2025
    assert model.gguf_path.read_bytes() == data


# -- auth and redirects ------------------------------------------------------------------------
def docker_config(tmp_path: Path, host: str, user: str, password: str) -> None:
    d = tmp_path / "docker"
    d.mkdir(exist_ok=True)
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    (d / "config.json").write_text(json.dumps({"auths": {host: {"auth": token}}}))


def test_bearer_token_flow_with_docker_config(stub, served, store, tmp_path) -> None:
    stub.auth, stub.credentials = "bearer", ("alice", "s3cret")
    with pytest.raises(RegistryAuthError):
        pull(store, ref(stub))
    docker_config(tmp_path, stub.host, "alice", "s3cret")
    assert pull(store, ref(stub)).downloaded
    token_requests = stub.requests_for("/token")
    assert token_requests[-1].headers["Authorization"].startswith("Basic ")
    assert "scope=repository%3Atest%2Fm%3Apull" in token_requests[-1].path
    assert all(s.headers.get("Authorization") == "Bearer tok-123:pull"
               for s in stub.requests_for("/blobs/") if s.status == 200)


def test_push_gets_a_push_scoped_token(stub, store, make_gguf, tmp_path) -> None:
    stub.auth, stub.credentials = "bearer", ("dave", "pw")
    docker_config(tmp_path, stub.host, "dave", "pw")
    name = f"{stub.host}/team/model:v1"
    model = package_gguf(store, make_gguf(rows=64), name)
    assert push(store, name) == model.id
    scopes = [s.path.split("scope=")[1] for s in stub.requests_for("/token")]
    assert "repository%3Ateam%2Fmodel%3Apull%2Cpush" in scopes
    assert stub.manifests["team/model"]["v1"][0] == store.manifest_bytes(model)
    assert set(stub.blobs) == set(model.files)
    # and it pulls back, byte for byte, into another store
    other = Store(tmp_path / "other")
    assert pull(other, name).model.gguf_path.read_bytes() == model.gguf_path.read_bytes()


def test_anonymous_token(stub, served, store) -> None:
    stub.auth = "bearer"
    assert pull(store, ref(stub)).downloaded
    assert "Authorization" not in stub.requests_for("/token")[0].headers


def test_basic_auth_from_docker_config(stub, served, store, tmp_path) -> None:
    stub.auth, stub.credentials = "basic", ("bob", "pw")
    with pytest.raises(RegistryAuthError, match="requires a login"):
        pull(store, ref(stub))
    docker_config(tmp_path, stub.host, "bob", "pw")
    assert pull(store, ref(stub)).downloaded


def test_credentials_do_not_follow_redirects(stub, served, store, tmp_path) -> None:
    cdn = StubRegistry()
    try:
        cdn.blobs.update(stub.blobs)
        stub.auth, stub.credentials = "basic", ("carol", "pw")
        docker_config(tmp_path, stub.host, "carol", "pw")
        target = f"http://localhost:{cdn.port}"  # another host name
        stub.faults.append(Fault("/blobs/", "redirect", times=99, target=target))
        assert pull(store, ref(stub)).downloaded
        assert cdn.requests_for("/blobs/")
        assert all("Authorization" not in s.headers for s in cdn.seen)
    finally:
        cdn.close()


def test_redirect_to_plain_http_is_refused(monkeypatch) -> None:
    import requests

    from mr.store.registry import RegistryClient

    client = RegistryClient("registry.example.com", basic_auth="")
    assert client.scheme == "https"
    sent: list[tuple[str, dict]] = []

    def fake(method, url, headers=None, **_kw):
        sent.append((url, dict(headers or {})))
        resp = requests.Response()
        resp.raw = io.BytesIO(b"")
        resp.status_code = 307
        resp.headers["Location"] = "http://cdn.example.net/blob"
        return resp

    monkeypatch.setattr(client.session, "request", fake)
    with pytest.raises(RegistryError, match="plain HTTP"):
        client.open_blob("a/b", "sha256:" + "a" * 64)
    assert [u for u, _ in sent] == ["https://registry.example.com/v2/a/b/blobs/sha256:" + "a" * 64]


def test_progress_events(stub, served, store, fast_client) -> None:
    events: list[dict] = []
    from mr.store import progress

    report = progress.make(True, events.append, total=10)  # not a TTY: events only
    assert not isinstance(report, progress.TqdmProgress)
    pull(store, ref(stub), client=fast_client(stub.host), on_progress=events.append)
    layer_events = [e for e in events if "layer" in e]
    assert layer_events and all(e["type"] == "progress" for e in layer_events)
    last = [e for e in layer_events if e["layer"]["id"] == weights(served)][-1]
    assert last["layer"]["current"] == last["layer"]["size"] == served.manifest.weights[0].size


def test_stub_head_challenges_have_no_body(stub, served) -> None:
    """The stub's own HTTP: a 401 to HEAD sends no body, so a reused connection stays in sync
    (a stray body once surfaced as BadStatusLine('{}HTTP/1.1 200 OK') in a push test)."""
    import http.client

    stub.auth = "bearer"
    conn = http.client.HTTPConnection(stub.host, timeout=10)
    try:
        for _ in range(2):
            conn.request("HEAD", "/v2/test/m/manifests/v1")
            response = conn.getresponse()
            assert response.status == 401
            assert response.read() == b""
        conn.request("GET", "/v2/")
        assert conn.getresponse().status in (200, 401)
    finally:
        conn.close()
