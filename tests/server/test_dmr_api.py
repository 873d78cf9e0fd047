"""Docker Model Runner's API: /models (list, inspect, create with NDJSON progress, tag, push,
delete), /engines/status|df, /version, /; pulls and pushes go to a real local registry."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import ollama
import pytest

from support.serving import SMOL, TINY, serve_client

TINY_ID_FIELDS = {"id", "tags", "created", "config"}


def test_list_and_inspect(http: httpx.Client) -> None:
    models = http.get("/models").json()
    assert all(set(m) == TINY_ID_FIELDS for m in models)
    tags = {t for m in models for t in m["tags"]}
    assert tags >= {"docker.io/ai/smollm2:latest", "docker.io/ai/tiny:latest"}
    one = http.get("/models/ai/smollm2").json()
    assert one["tags"] == ["docker.io/ai/smollm2:latest"] and one["config"]["architecture"] == "llama"
    assert http.get(f"/models/{one['id']}").json()["id"] == one["id"]
    missing = http.get("/models/ai/nope")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "model_not_found"
    bad = http.get("/models/sha256:..%2F..%2Fetc")
    assert bad.status_code == 400


def test_runtime_routes(http: httpx.Client) -> None:
    assert http.get("/").status_code == 200 and "running" in http.get("/").text
    assert http.get("/version").json()["version"]
    status = http.get("/engines/status").json()
    assert status["running"] and status["memory"]["budget"] > 0
    df = http.get("/engines/df").json()
    assert df["models_disk_usage"] > 90 << 20


def test_tag_and_delete(store_root: Path, tmp_path: Path) -> None:
    root = tmp_path / "store"
    shutil.copytree(store_root, root)
    with serve_client(root, tmp_path) as c:
        r = c.post("/models/ai/tiny/tag", params={"repo": "ai/tiny-copy", "tag": "v1"})
        assert r.status_code == 201, r.text
        assert "docker.io/ai/tiny-copy:v1" in c.get("/models/ai/tiny").json()["tags"]
        assert c.post("/models/ai/tiny/tag").json()["error"]["param"] == "repo"
        model_id = c.get("/models/ai/tiny").json()["id"]
        conflict = c.delete(f"/models/{model_id}")
        assert conflict.status_code == 409  # an ID with two tags needs force
        assert c.delete("/models/ai/tiny-copy:v1").json()["lines"] == ["Untagged: tiny-copy:v1"]
        chat = {"model": TINY, "messages": [{"role": "user", "content": "x"}], "max_tokens": 1}
        assert c.post("/v1/chat/completions", json=chat).status_code == 200
        gone = c.delete("/models/ai/tiny")  # loaded but idle: unloaded, then deleted
        assert gone.status_code == 200 and gone.json()["lines"][-1].startswith("Deleted: sha256:")
        assert c.get("/engines/ps").json() == []
        assert c.delete("/models/ai/tiny").status_code == 404


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = shutil.which("docker-registry") or ("/usr/bin/docker-registry"
                                                 if os.path.exists("/usr/bin/docker-registry") else None)
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("docker-registry is not installed (apt-get install docker-registry)")
        pytest.skip("docker-registry is not installed")
    base = tmp_path_factory.mktemp("registry")
    host = f"127.0.0.1:{_free_port()}"
    (base / "config.yml").write_text(
        "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n"
        f"storage:\n  filesystem:\n    rootdirectory: {base / 'data'}\nhttp:\n  addr: {host}\n")
    proc = subprocess.Popen([binary, "serve", str(base / "config.yml")], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://{host}/v2/", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        yield host
    finally:
        proc.terminate()
        proc.wait(10)


def ndjson(r: httpx.Response) -> list[dict]:
    return [json.loads(line) for line in r.text.splitlines() if line]


def test_create_pulls_with_ndjson_progress_then_push(store_root: Path, tmp_path: Path, registry: str) -> None:
    from mr.store import Store
    from mr.store.push import push

    push(Store(store_root), TINY, target=f"{registry}/ai/tiny:latest")
    with serve_client(tmp_path / "fresh", tmp_path) as c:
        r = c.post("/models/create", json={"from": f"{registry}/ai/tiny"})
        assert r.status_code == 200 and r.headers["content-type"].startswith("application/x-ndjson")
        events = ndjson(r)
        assert events[-1] == {"type": "success", "message": "Model pulled successfully"}
        progress = [e for e in events if e["type"] == "progress" and "layer" in e]
        assert progress and progress[-1]["layer"]["current"] == progress[-1]["layer"]["size"]
        name = f"{registry}/ai/tiny"
        chat = {"model": name, "messages": [{"role": "user", "content": "x"}], "max_tokens": 1}
        assert c.post("/v1/chat/completions", json=chat).status_code == 200
        tagged = c.post(f"/models/{name}/tag", params={"repo": f"{registry}/ai/pushed", "tag": "v2"})
        assert tagged.status_code == 201
        pushed = ndjson(c.post(f"/models/{registry}/ai/pushed:v2/push"))
        assert pushed[-1]["type"] == "success", pushed[-1]
        assert httpx.get(f"http://{registry}/v2/ai/pushed/tags/list").json()["tags"] == ["v2"]
        failed = c.post("/models/create", json={"from": f"{registry}/ai/absent"})
        assert failed.status_code == 404, failed.text  # was a 200 with the error inside
        assert "absent" in failed.json()["error"]["message"]
        assert c.post("/models/create", json={"from": "UPPER/Case:bad tag"}).status_code == 400


def test_ollama_pull_from_a_registry(tmp_path: Path, registry: str, store_root: Path) -> None:
    from mr.store import Store
    from mr.store.push import push

    push(Store(store_root), SMOL, target=f"{registry}/ai/smol:latest")
    with serve_client(tmp_path / "fresh", tmp_path) as c:
        client = ollama.Client(host=str(c.base_url), timeout=60)
        statuses = [p.status for p in client.pull(f"{registry}/ai/smol", stream=True)]
        assert statuses[0] == "pulling manifest" and statuses[-1] == "success"
        assert any(s.startswith("pulling ") and s != "pulling manifest" for s in statuses)
        assert client.pull(f"{registry}/ai/smol").status == "success"
        assert f"{registry}/ai/smol:latest" in [m.model for m in client.list().models]
        client.delete(f"{registry}/ai/smol")
        assert client.list().models == []
        r = c.post("/api/pull", json={"model": f"{registry}/ai/absent", "stream": True})
        lines = [json.loads(line) for line in r.text.splitlines()]
        assert lines[0] == {"status": "pulling manifest"} and "absent" in lines[-1]["error"]
        plain = c.post("/api/pull", json={"model": f"{registry}/ai/absent", "stream": False})
        assert plain.status_code == 404 and "absent" in plain.json()["error"]  # was a 500
