"""CLI verbs against a running server: `mr requests [-f] [--json]`, `mr run --detach`, and
DELETE /models/purge (each on a store of its own, so nothing else loses its models)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from mr.cli import cli
from support.serving import ServerThread, chat, loaded, make_settings, wait_for

TINY = "ai/tiny"


@pytest.fixture
def own_server(tmp_path: Path, tiny_gguf: Path) -> Iterator[tuple[ServerThread, dict[str, str]]]:
    from mr.server import create_app
    from mr.store import Store, package_gguf

    root = tmp_path / "models"
    store = Store(root)
    package_gguf(store, tiny_gguf, TINY)
    package_gguf(store, tiny_gguf, "ai/tiny-two")
    with ServerThread(create_app(make_settings(root, tmp_path))) as running:
        env = {"MR_HOST": running.url, "MR_HOME": str(tmp_path / "home"), "MR_MODELS_DIR": str(root)}
        yield running, env


def mr(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mr", *args], env={**os.environ, **env, "MR_DEBUG": ""},
                          capture_output=True, text=True, timeout=120)


def test_requests_prints_json_and_follows(own_server: tuple[ServerThread, dict[str, str]]) -> None:
    running, env = own_server
    with httpx.Client(base_url=running.url, timeout=60) as client:
        assert chat(client, TINY, max_tokens=2).status_code == 200
        human = CliRunner().invoke(cli, ["requests"], env=env)
        assert human.exit_code == 0, human.output
        assert "POST /v1/chat/completions  200" in human.output and TINY in human.output
        records = json.loads(CliRunner().invoke(cli, ["requests", "--json"], env=env).output)
        assert len(records) == 1 and records[0]["completion_tokens"] == 2
        other = CliRunner().invoke(cli, ["requests", "--json", "--model", "ai/tiny-two"], env=env)
        assert json.loads(other.output) == []
        follow = subprocess.Popen([sys.executable, "-m", "mr", "requests", "-f", "--json"],
                                  env={**os.environ, **env}, stdout=subprocess.PIPE, text=True)
        try:
            assert json.loads(follow.stdout.readline())["id"] == records[0]["id"]  # type: ignore[union-attr]
            assert chat(client, "ai/tiny-two", max_tokens=3).status_code == 200
            new = json.loads(follow.stdout.readline())  # type: ignore[union-attr]
            assert new["model"] == "ai/tiny-two" and new["completion_tokens"] == 3
        finally:
            follow.terminate()
            follow.wait(10)


def test_run_detach_preloads_without_chatting(own_server: tuple[ServerThread, dict[str, str]]) -> None:
    running, env = own_server
    result = mr(env, "run", "--detach", TINY)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""  # no chat, no answer
    with httpx.Client(base_url=running.url, timeout=10) as client:
        assert "tiny" in loaded(client)  # ps shows display names
        (load,) = client.get("/engines/requests").json()  # Ollama's empty generate: a load
        assert load["path"] == "/api/generate" and not load["completion_tokens"]
    missing = mr(env, "run", "-d", "ai/not-there")
    assert missing.returncode != 0 and len(missing.stderr.strip().splitlines()) <= 2
    no_server = mr({**env, "MR_HOST": "http://127.0.0.1:9"}, "run", "--detach", TINY)
    assert no_server.returncode == 13 and "mr serve" in no_server.stderr


def test_purge_route_unloads_and_removes_everything(own_server: tuple[ServerThread, dict[str, str]]) -> None:
    running, _env = own_server
    with httpx.Client(base_url=running.url, timeout=60) as client:
        assert chat(client, TINY).status_code == 200
        r = client.delete("/models/purge")
        assert r.status_code == 200, r.text
        assert r.json()["deleted"] == 2
        assert client.get("/models").json() == []
        assert wait_for(lambda: loaded(client) == {}, 10)
        assert chat(client, TINY).status_code == 404
        assert client.post("/models/purge").json()["deleted"] == 0
