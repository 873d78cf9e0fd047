"""A model a server has loaded keeps its files until it is unloaded, whoever removes it: the CLI
in another process, or DELETE ?force=true / /api/delete while it serves (issue 12 item 10)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import httpx

from support.serving import loaded, serve_client, wait_for

CHAT = {"messages": [{"role": "user", "content": "x"}], "max_tokens": 1}


def _private_store(root: Path, tiny_gguf: Path) -> Path:
    from mr.store import Store, package_gguf

    return package_gguf(Store(root), tiny_gguf, "ai/mine").gguf_path


def test_cli_rm_keeps_the_files_of_a_loaded_model(tmp_path: Path, tiny_gguf: Path) -> None:
    root = tmp_path / "models"
    gguf = _private_store(root, tiny_gguf)
    with serve_client(root, tmp_path) as c:
        assert c.post("/v1/chat/completions", json={"model": "ai/mine", **CHAT}).status_code == 200
        env = {**os.environ, "MR_MODELS_DIR": str(root), "MR_HOME": str(tmp_path), "MR_HOST": "http://127.0.0.1:9"}
        rm = subprocess.run([sys.executable, "-m", "mr", "rm", "ai/mine"], env=env, capture_output=True,
                            text=True, timeout=60)
        assert rm.returncode == 0, rm.stderr
        assert gguf.exists(), "mr rm deleted the files of a model the server has loaded"
        assert c.post("/engines/unload", json={"all": True}).status_code == 200
        assert not gguf.exists()  # gone once unloaded


def test_force_delete_of_a_serving_model_waits_for_its_requests(tmp_path: Path, tiny_gguf: Path) -> None:
    root = tmp_path / "models"
    gguf = _private_store(root, tiny_gguf)
    with serve_client(root, tmp_path, ctx_size=4096, parallel=1) as c:
        body = {"model": "ai/mine", "messages": [{"role": "user", "content": "x"}], "max_tokens": 1500,
                "ignore_eos": True, "stream": True}
        done: dict[str, bytes] = {}
        started = threading.Event()

        def consume() -> None:
            with httpx.stream("POST", f"{c.base_url}/v1/chat/completions", json=body, timeout=120) as r:
                raw = b""
                for chunk in r.iter_bytes():
                    raw += chunk
                    started.set()
                done["raw"] = raw

        reader = threading.Thread(target=consume)
        reader.start()
        assert started.wait(60)
        r = c.delete("/models/ai/mine", params={"force": "true"})
        assert r.status_code == 200, r.text
        assert gguf.exists(), "force delete removed the files of a model serving a request"
        reader.join(120)
        assert done["raw"].endswith(b"data: [DONE]\n\n")
        assert wait_for(lambda: loaded(c) == {}, 10)
        assert wait_for(lambda: not gguf.exists(), 10)
