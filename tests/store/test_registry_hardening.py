"""Issue 29's findings: credentials stay with their registry, a manifest cannot delete another
model's blob, and CLI pulls and every push are bounded by a transfer guard."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from mr.store import Store, package_gguf
from mr.store.errors import InvalidManifestError, RegistryAuthError, RegistryError
from mr.store.model import LocalModel
from mr.store.pull import pull
from mr.store.push import push
from mr.store.registry import RegistryClient, may_carry_credentials
from mr.store.transfer import TransferAbortedError, TransferGuard
from support.registry_stub import Fault, StubRegistry


@pytest.fixture
def served(stub: StubRegistry, make_gguf, tmp_path: Path) -> LocalModel:
    """A 1 MiB model packaged elsewhere and served by the stub as test/m:v1."""
    source = Store(tmp_path / "source")
    model = package_gguf(source, make_gguf(rows=4096), "m")
    stub.add_from_store(source, "m", "test/m", "v1")
    return model


def weights(model: LocalModel) -> str:
    return model.manifest.weights[0].digest


def docker_config(tmp_path: Path, host: str, user: str, password: str) -> None:
    d = tmp_path / "docker"
    d.mkdir(exist_ok=True)
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    (d / "config.json").write_text(json.dumps({"auths": {host: {"auth": token}}}))


# -- A: credentials go to their registry only, never in clear text ---------------------------
@pytest.fixture
def other_hosts() -> Iterator[tuple[StubRegistry, StubRegistry]]:
    """A CDN-like stub on 127.0.0.2 and a token service on 127.0.0.3: other hosts than the
    registry's 127.0.0.1, all reachable in a test."""
    cdn, auth = StubRegistry("127.0.0.2"), StubRegistry("127.0.0.3")
    try:
        yield cdn, auth
    finally:
        cdn.close()
        auth.close()


def test_a_redirect_targets_challenge_gets_no_credentials(stub, served, store, tmp_path,
                                                          other_hosts) -> None:
    """CVE-2025-51471's shape: the registry redirects a blob to host B, B answers 401 with a
    Bearer realm on host C. Neither B nor C may see the registry's credentials, and C's token
    must not be replayed to the registry."""
    cdn, auth = other_hosts
    cdn.blobs.update(stub.blobs)
    cdn.auth, cdn.realm = "bearer", f"http://{auth.host}/token"
    stub.auth, stub.credentials = "basic", ("carol", "pw")
    docker_config(tmp_path, stub.host, "carol", "pw")
    stub.faults.append(Fault("/blobs/", "redirect", times=99, target=f"http://{cdn.host}"))
    with pytest.raises(RegistryAuthError) as info:
        pull(store, f"{stub.host}/test/m:v1")
    assert cdn.requests_for("/blobs/"), "the redirect was not followed"
    leaked = [(s.path, s.headers["Authorization"]) for s in cdn.seen + auth.seen
              if "Authorization" in s.headers]
    assert leaked == []
    assert auth.seen == []  # not even an anonymous token request
    assert not any(s.headers.get("Authorization", "").startswith("Bearer") for s in stub.seen)
    assert f"{cdn.host}, where registry {stub.host} redirected, asks for a login" in str(info.value)
    assert store.list() == []


@pytest.mark.parametrize(("url", "allowed"), [
    ("https://auth.docker.io/token", True),  # a realm on another host over HTTPS: normal
    ("https://registry.example.com:5000/token", True),
    ("http://127.0.0.1:5000/token", True),
    ("http://127.8.9.10/token", True),
    ("http://localhost:5001/token", True),
    ("http://[::1]:5000/token", True),
    ("http://registry.local/token", False),  # mDNS: anyone on the link can answer
    ("http://registry.local:5001/token", False),
    ("http://auth.example.com/token", False),
    ("http://10.0.0.5/token", False),
    ("ftp://127.0.0.1/token", False),
    ("http:///token", False),
])
def test_where_credentials_may_go(url: str, allowed: bool) -> None:
    assert may_carry_credentials(url) is allowed


def test_a_listed_insecure_host_may_get_credentials(monkeypatch) -> None:
    monkeypatch.setenv("MR_INSECURE_REGISTRIES", "registry.lan:5000, auth.lan")
    assert may_carry_credentials("http://registry.lan:5000/v2/")
    assert may_carry_credentials("http://auth.lan:8080/token")
    assert not may_carry_credentials("http://registry.lan:5001/token")


@pytest.mark.parametrize("challenge", [
    'Bearer realm="http://registry.local:5001/token",service="r",scope="repository:a/b:pull"',
    'Basic realm="r"',
])
def test_no_credentials_in_clear_text_to_a_dot_local_registry(monkeypatch, challenge) -> None:
    """Only loopback answers in a test, so the wire is faked here: a `*.local` registry (plain
    HTTP by default) asks for credentials; none may leave in clear text."""
    client = RegistryClient("registry.local:5000", basic_auth=base64.b64encode(b"u:p").decode())
    assert client.scheme == "http"
    sent: list[dict[str, str]] = []

    def answer(method: str, url: str, headers: dict[str, str] | None = None,
               **_kw: Any) -> requests.Response:
        sent.append(dict(headers or {}))
        resp = requests.Response()
        resp.raw, resp.status_code, resp.url = io.BytesIO(b""), 401, url
        resp.headers["WWW-Authenticate"] = challenge
        return resp

    monkeypatch.setattr(client.session, "request", answer)
    monkeypatch.setattr(client.session, "get", lambda url, **kw: answer("GET", url, **kw))
    with pytest.raises(RegistryAuthError, match="plain HTTP"):
        client.open_blob("a/b", "sha256:" + "a" * 64)
    assert sent and all("Authorization" not in h for h in sent)


# -- B: a hostile manifest cannot delete a committed blob -------------------------------------
def test_a_manifest_cannot_delete_another_models_blob(stub, served, store) -> None:
    first = pull(store, f"{stub.host}/test/m:v1").model
    digest = weights(first)
    doc = json.loads(store.manifest_bytes(first))
    for layer in doc["layers"]:
        if layer["digest"] == digest:
            layer["size"] += 1  # the same digest, another size
    hostile = json.dumps(doc).encode()
    stub.add("test/evil", "v1", hostile, {})
    with pytest.raises(RegistryError) as info:
        pull(store, f"{stub.host}/test/evil:v1")
    blob = store.blobs.path(digest)
    assert blob.is_file(), "the other model's blob was deleted"
    assert "sha256:" + hashlib.sha256(blob.read_bytes()).hexdigest() == digest
    assert isinstance(info.value, InvalidManifestError)
    assert f"blob {digest} is already in the store with" in str(info.value)
    assert [m.id for m in store.list()] == [first.id]  # no half model from the refused pull
    assert not store.layout.manifest_path("sha256:" + hashlib.sha256(hostile).hexdigest()).exists()
    assert not store.layout.partial_path(digest).exists()
    assert store.resolve(f"{stub.host}/test/m:v1").gguf_path.read_bytes() == blob.read_bytes()


# -- C: CLI pulls get the minimum-rate guard; a push honours its guard --------------------------
def _within(seconds: float, work: Callable[[], object]) -> object:
    """`work()`'s result or exception; fails when it is still running after `seconds`."""
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(work())
        except BaseException as exc:
            outcome.append(exc)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(seconds)
    assert not worker.is_alive(), f"still transferring after {seconds}s"
    return outcome[0]


@pytest.mark.parametrize("verb", ["pull", "run"])
def test_a_cli_pull_of_a_trickling_registry_fails_in_bounded_time(
        verb: str, stub, served, store, monkeypatch, capsys) -> None:
    from mr.cli import cli as group
    from mr.cli.backends import resolve_model
    from mr.cli.errors import run_cli

    monkeypatch.setenv("MR_PULL_MIN_RATE", "1024")
    monkeypatch.setenv("MR_PULL_RATE_WINDOW", "1.5")
    stub.faults.append(Fault(f"/blobs/{weights(served)}", "trickle", times=99, delay=0.05))
    name = f"{stub.host}/test/m:v1"
    if verb == "pull":  # `mr pull`
        assert _within(10, lambda: run_cli(group, ["pull", name])) == 8
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: the transfer was slower than 1024")
    else:  # `mr run` pulls a model it cannot find
        failure = _within(10, lambda: resolve_model(name))
        assert isinstance(failure, TransferAbortedError)
        assert "slower than 1024 bytes/s" in str(failure)
    assert store.list() == []
    assert store.layout.partial_path(weights(served)).exists()  # kept for a resume


def test_a_push_stops_mid_upload_at_its_guard(stub, store, make_gguf) -> None:
    """The server's push gets a guard (cancel, deadline, rate) like its pull: the upload stops at
    the next chunk once the guard trips, and no manifest is pushed."""
    name = f"{stub.host}/team/big:v1"
    model = package_gguf(store, make_gguf(rows=65536), name)  # 16 MiB: more than socket buffers
    digest = weights(model)
    stub.faults.append(Fault(f"digest={digest}", "slow_upload", method="PUT", delay=0.05))
    guard = TransferGuard(deadline_s=1.0, min_rate=0)
    started = time.monotonic()
    failure = _within(8, lambda: push(store, name, guard=guard))
    assert isinstance(failure, TransferAbortedError) and "deadline" in str(failure)
    assert time.monotonic() - started < 6  # the upload alone takes over 10 s
    assert stub.requests_for(f"digest={digest}", "PUT"), "the upload had not started"
    assert digest not in stub.blobs
    assert "team/big" not in stub.manifests


def test_the_guard_measures_only_transfers_in_progress(stub, served, store) -> None:
    """CLI pulls now carry the guard, so a wait that moves no bytes by design (a Retry-After
    back-off here; re-hashing a large resumed partial likewise) must not count as a stall."""
    stub.faults.append(Fault(f"/blobs/{weights(served)}", "status", status=503,
                             headers={"Retry-After": "2"}))
    guard = TransferGuard(min_rate=1024, window_s=1.0)
    assert pull(store, f"{stub.host}/test/m:v1", guard=guard).downloaded
    assert guard.reason is None
