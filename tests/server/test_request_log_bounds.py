"""The request log is bounded in every way a client can grow it (RELIABILITY.md 39): made-up model
names share one ring, the rings are capped in number, and all records together in bytes, as
GET /engines/requests sends them."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import msgspec

from mr.server import Settings
from mr.server.context import STATE_KEY
from mr.server.requestlog import Record, RequestLog
from support.serving import TINY, ServerThread, chat, make_settings, wait_for

PADDING = "x" * 4000  # each request's body: ~4 KB


@contextmanager
def logged(store_root: Path, home: Path, **settings: object) -> Iterator[tuple[httpx.Client, RequestLog]]:
    """A server of its own, a client for it and its request log."""
    from mr.server import create_app

    app = create_app(make_settings(store_root, home, **settings))
    with ServerThread(app) as running, httpx.Client(base_url=running.url, timeout=60) as client:
        yield client, app.state[STATE_KEY].request_log


def _requests_body(client: httpx.Client, **query: object) -> bytes:
    r = client.get("/engines/requests", params=query)
    assert r.status_code == 200, r.text
    return r.content


def _unknown(client: httpx.Client, i: int) -> None:
    r = chat(client, f"nobody/made-up-{i}", messages=[{"role": "user", "content": PADDING}])
    assert r.status_code in (400, 404), r.text


def _settled(log: RequestLog, last_id: int) -> None:
    """Records land as each response ends on the server, a moment after the client has it."""
    assert wait_for(lambda: max((r.id for r in log.records()), default=0) >= last_id, 10)


def test_made_up_model_names_share_one_bounded_ring(store_root: Path, tmp_path: Path) -> None:
    with logged(store_root, tmp_path) as (client, log):
        _flood(client, log)


def _flood(client: httpx.Client, log: RequestLog) -> None:
    assert chat(client, TINY).status_code == 200
    for i in range(600):
        _unknown(client, i)
    _settled(log, 601)
    body = _requests_body(client)
    models = [r["model"] for r in msgspec.json.decode(body)]
    assert TINY in models and len(models) == 11  # the model that serves kept its record
    assert len(body) < 11 * (len(PADDING) + 2000)  # it was 601 records, ~2.8 MB
    rings, held = log.size
    assert rings == 2 and len(body) == held + 1  # ai/tiny's and the shared one (there were 601)
    assert [r["model"] for r in msgspec.json.decode(_requests_body(client, model=TINY))] == [TINY]


def test_all_records_together_fit_the_byte_cap(store_root: Path, tmp_path: Path) -> None:
    with logged(store_root, tmp_path, request_log_size=1000, request_log_max_bytes=64 << 10) as (client, log):
        for i in range(40):  # ~340 KB of requests to a model that serves
            assert chat(client, TINY, max_tokens=1, user=f"{i} {PADDING}{PADDING}").status_code == 200
        _settled(log, 40)
        body = _requests_body(client)
    assert len(body) <= (64 << 10) + 1
    kept = msgspec.json.decode(body)
    assert 2 <= len(kept) < 40
    assert [r["id"] for r in kept] == list(range(41 - len(kept), 41))  # the newest; the oldest went


def _record(record_id: int, model: str, status: int = 200, text: str = "") -> Record:
    return Record(id=record_id, model=model, method="POST", path="/v1/chat/completions", status=status,
                  started_at=0.0, duration_ms=1.0, ttfb_ms=None, stream=False, prompt_tokens=None,
                  completion_tokens=None, request=text, response="", request_bytes=len(text),
                  response_bytes=0)


def test_rings_are_capped_in_number_the_least_recently_used_going_first() -> None:
    log = RequestLog(per_model=3, body_limit=1024)
    log.add(_record(1, "ai/kept"))
    for i in range(2, 300):  # names that each served (distinct IDs or spellings of one model)
        log.add(_record(i, f"ai/m{i}"))
        if i % 10 == 0:
            log.add(_record(1000 + i, "ai/kept"))  # used recently: stays
    from mr.server.requestlog.log import MAX_MODELS

    rings, _ = log.size
    assert rings == MAX_MODELS
    assert {r.model for r in log.records()} >= {"ai/kept", "ai/m299"}
    assert log.records(model="ai/m2") == []


def test_a_known_models_failures_stay_with_it_and_others_share_a_ring() -> None:
    log = RequestLog(per_model=2, body_limit=1024)
    log.add(_record(1, "ai/tiny"))
    log.add(_record(2, "ai/tiny", status=400))  # a model with a ring keeps its failures
    log.add(_record(3, "ai/nothing", status=404))
    log.add(_record(4, "ai/other", status=400))
    log.add(_record(5, "ai/else", status=404))  # the shared ring keeps its last 2
    assert log.size[0] == 2
    assert [r.id for r in log.records(model="docker.io/ai/tiny:latest")] == [1, 2]
    assert [r.id for r in log.records(model="ai/other")] == [4]
    assert [r.id for r in log.records()] == [1, 2, 4, 5]


def test_the_byte_cap_counts_what_the_route_sends() -> None:
    log = RequestLog(per_model=100, body_limit=1 << 20, max_bytes=10_000)
    for i in range(1, 50):
        log.add(_record(i, "ai/tiny", text="\x01" * 300))  # JSON-escaped: 6 bytes each
    sent = msgspec.json.encode(log.records())
    assert len(sent) <= 10_001 and log.size[1] == len(sent) - 1
    assert log.records()[-1].id == 49


def test_the_cap_is_a_setting() -> None:
    assert Settings().request_log_max_bytes == 16 << 20
    from mr.cli.serve import _settings, serve

    options = serve.make_context("mr serve", ["--request-log-max", "1MiB"]).params
    assert _settings(options).request_log_max_bytes == 1 << 20
