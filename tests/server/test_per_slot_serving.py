"""`mr serve` with one KV cache per slot (MR_PER_SLOT_KV, `--per-slot-kv`): each request gets its
slot's share of the context, and says so when a prompt does not fit."""

from __future__ import annotations

from pathlib import Path

from support.serving import TINY, serve_client

LONG = [100 + i % 500 for i in range(700)]  # fits 1024 tokens, not a 512-token share


def _complete(client, prompt: list[int]):
    return client.post("/v1/completions", json={"model": TINY, "prompt": prompt, "max_tokens": 4})


def test_a_prompt_must_fit_its_slots_share(store_root: Path, tmp_path: Path) -> None:
    with serve_client(store_root, tmp_path, ctx_size=1024, parallel=2, per_slot_kv=True) as client:
        assert client.get("/engines/status").json()["defaults"]["kv_cache"] == "per-slot"
        error = _complete(client, LONG).json()["error"]
        assert error["code"] == "context_length_exceeded" and "512" in error["message"]
        ok = _complete(client, LONG[:300])
        assert ok.status_code == 200 and ok.json()["usage"]["completion_tokens"] == 4
        [ps] = client.get("/engines/ps").json()
        assert (ps["context_size"], ps["request_context"]) == (1024, 512)
    with serve_client(store_root, tmp_path, ctx_size=1024, parallel=2) as shared:
        assert shared.get("/engines/status").json()["defaults"]["kv_cache"] == "shared"
        assert _complete(shared, LONG).status_code == 200
        assert shared.get("/engines/ps").json()[0]["request_context"] == 1024


def test_the_environment_and_the_flag_set_it(monkeypatch) -> None:
    from mr.cli.serve import _settings
    from mr.server import Settings

    assert not Settings.from_env({}).per_slot_kv
    assert Settings.from_env({"MR_PER_SLOT_KV": "1"}).per_slot_kv
    monkeypatch.setenv("MR_PER_SLOT_KV", "1")
    assert _settings({}).per_slot_kv and not _settings({"per_slot_kv": False}).per_slot_kv
    monkeypatch.delenv("MR_PER_SLOT_KV")
    assert _settings({"per_slot_kv": True}).per_slot_kv


def test_mr_ps_shows_each_requests_share() -> None:
    from mr.cli.runtime_cmds import _context

    assert _context({"context_size": 4096, "request_context": 512}) == "4096 (512/slot)"
    assert _context({"context_size": 4096, "request_context": 4096}) == "4096"
