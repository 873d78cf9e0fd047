"""Real servers for tests: a store of the test models, uvicorn serving mr's app in a background
thread (or `mr serve` in a process of its own), and small HTTP helpers. Shared by the test folders
(tests/server, tests/runner, tests/cli) as `support.serving`."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from support.workers import free_port as free_port  # one port picker for servers and workers

SMOL = "ai/smollm2"
TINY = "ai/tiny"


def package_test_store(root: Path, smollm2_path: Path, tiny_gguf: Path) -> Path:
    """A model store at `root` holding ai/smollm2 (the real model) and ai/tiny (random weights)."""
    from mr.store import Store, package_gguf

    store = Store(root)
    package_gguf(store, smollm2_path, SMOL)
    package_gguf(store, tiny_gguf, TINY)
    return root


def make_settings(store_root: Path, mr_home: Path, **overrides: object) -> Any:
    from mr.server import Settings

    base = dict(ctx_size=2048, parallel=4, models_dir=str(store_root),
                settings_path=str(mr_home / "model-settings.json"), log_requests=False)
    base.update(overrides)
    return Settings(**base)  # type: ignore[arg-type]


class ServerThread:
    """uvicorn serving `app` on a free 127.0.0.1 port, in its own thread and event loop."""

    def __init__(self, app: Any, host: str = "127.0.0.1") -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        from mr.server.hygiene import guarded_protocol

        # mr serve's own HTTP protocol: it is what hands streams the connection (mr.server.wire)
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on",
                                timeout_graceful_shutdown=5, http=guarded_protocol(10.0, 120.0))
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("test server did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.sock.close()


def chat(client: httpx.Client, model: str, **extra: object) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2, **extra}
    return client.post("/v1/chat/completions", json=body)


def loaded(client: httpx.Client) -> dict[str, dict]:
    return {m["model_name"]: m for m in client.get("/engines/ps").json()}


def wait_for(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


LAUNCH = "from mr.cli.serve import serve; serve(prog_name='mr serve')"
# With the Settings fields no flag or variable sets (the experiment switches), as the bench does.
LAUNCH_WITH = ("import json, sys; from mr.cli.serve import serve_with; "
               "serve_with(sys.argv[2:], **json.loads(sys.argv[1]))")


def start(args: list[str], env: dict[str, str], **switches: object) -> subprocess.Popen[str]:
    """`mr serve ARGS` in a process of its own, with `env` and Settings fields `switches`."""
    launch = [LAUNCH_WITH, json.dumps(switches)] if switches else [LAUNCH]
    return subprocess.Popen([sys.executable, "-c", *launch, *args], env={**os.environ, **env},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_healthy(url: str, proc: subprocess.Popen[str], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[1]
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise AssertionError("mr serve did not come up")


def serve(store_root: Path, mr_home: Path, **overrides: object) -> ServerThread:
    """mr's app over the store (settings overridden), served by a ServerThread."""
    from mr.server import create_app

    return ServerThread(create_app(make_settings(store_root, mr_home, **overrides)))


@contextmanager
def serve_client(store_root: Path, mr_home: Path, **overrides: object) -> Iterator[httpx.Client]:
    """A server of its own (settings overridden) and an httpx client for it."""
    with serve(store_root, mr_home, **overrides) as running, httpx.Client(base_url=running.url,
                                                                           timeout=60) as client:
        yield client
