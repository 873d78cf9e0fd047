"""`POST /engines/configure` gives a model only the RPC workers the server was started with (issue
29, finding 9a): `mr serve --rpc` and `--rpc-allow`. A model's weights and
every request's activations go to its workers, over a protocol with no authentication, so any
other host:port is a 400 naming it, is not persisted, and is never connected to."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from support.serving import TINY, ServerThread, chat, free_port, make_settings, start, wait_healthy


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A stranger's port: it accepts connections, as an RPC worker would, and records them."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        sock.settimeout(0.5)
        yield sock


def _connected(listener: socket.socket) -> bool:
    try:
        conn, _ = listener.accept()
    except TimeoutError:
        return False
    conn.close()
    return True


def test_configure_refuses_a_worker_the_server_was_not_started_with(
        store_root: Path, tmp_path: Path, listener: socket.socket) -> None:
    stranger = f"127.0.0.1:{listener.getsockname()[1]}"
    allowed = "127.0.0.1:1"  # never contacted: the model is configured, not loaded, with it
    settings_file = tmp_path / "settings.json"
    settings = make_settings(store_root, tmp_path, settings_path=str(settings_file), rpc_allow=[allowed])
    from mr.server import create_app

    with ServerThread(create_app(settings)) as running, \
            httpx.Client(base_url=running.url, timeout=120) as client:
        for route in ("/engines/configure", "/engines/_configure"):
            refused = client.post(route, json={"model": TINY, "rpc": [allowed, stranger]})
            assert refused.status_code == 400, refused.text
            error = refused.json()["error"]
            assert error["param"] == "rpc" and stranger in error["message"]
        assert stranger not in (settings_file.read_text() if settings_file.exists() else "")
        assert chat(client, TINY).status_code == 200  # loads on this machine only
        assert not _connected(listener)
        assert client.post("/engines/configure", json={"model": TINY, "rpc": allowed}).status_code == 200
        assert client.post("/engines/configure", json={"model": TINY, "rpc": "none"}).status_code == 200
    assert json.loads(settings_file.read_text())  # the allowed changes were persisted
    assert stranger not in settings_file.read_text()


def test_the_servers_own_workers_are_allowed(store_root: Path, tmp_path: Path) -> None:
    from mr.server import create_app

    workers = ["127.0.0.1:2", "127.0.0.1:3"]
    settings = make_settings(store_root, tmp_path, settings_path=str(tmp_path / "s.json"), rpc=workers)
    with ServerThread(create_app(settings)) as running, \
            httpx.Client(base_url=running.url, timeout=120) as client:
        done = client.post("/engines/configure", json={"model": TINY, "rpc": workers[1]})
        assert done.status_code == 200, done.text
        assert done.json()["rpc"] == [workers[1]]
        other = client.post("/engines/configure", json={"model": TINY, "rpc": "127.0.0.1:4"})
        assert other.status_code == 400 and "127.0.0.1:4" in other.json()["error"]["message"]


def test_mr_serve_takes_the_allow_list_from_its_flag(store_root: Path, tmp_path: Path) -> None:
    from mr.cli.serve import _settings

    settings = _settings({"rpc_allow": "10.0.0.2:50052, 10.0.0.3:50052"})
    assert settings.rpc_allow == ["10.0.0.2:50052", "10.0.0.3:50052"]
    port = free_port()
    env = {"MR_MODELS_DIR": str(store_root), "MR_HOME": str(tmp_path), "MR_PORT": str(port)}
    proc = start(["--rpc-allow", "10.0.0.2:50052"], env)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url, proc)
        configure = f"{url}/engines/configure"
        assert httpx.post(configure, json={"model": TINY, "rpc": "10.0.0.2:50052"}).status_code == 200
        assert httpx.post(configure, json={"model": TINY, "rpc": "10.0.0.3:50052"}).status_code == 400
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
    from mr.cli.serve import serve as serve_cmd

    bad = CliRunner().invoke(serve_cmd, ["--rpc-allow", "nohost"], env=env)
    assert bad.exit_code == 2 and "--rpc-allow" in bad.output and "HOST:PORT" in bad.output
