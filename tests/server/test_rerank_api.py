"""POST /rerank and /score on a tiny random-weights reranker (its own store and server), and the
refusal of a model that is not one."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from support.models import write_tiny_reranker
from support.serving import SMOL, serve_client

RR = "ai/tiny-rerank"
DOCS = ["cats purr and sleep", "the stock market fell", "kittens are young cats", "rain tomorrow",
        "a recipe for bread"]
PATHS = ["/rerank", "/v1/rerank", "/engines/rerank", "/engines/llama.cpp/rerank"]


@pytest.fixture(scope="module")
def rr(tmp_path_factory: pytest.TempPathFactory, smollm2_path: Path) -> Iterator[httpx.Client]:
    from mr.store import Store, package_gguf

    root = tmp_path_factory.mktemp("rerank-store")
    package_gguf(Store(root), write_tiny_reranker(smollm2_path, root.parent / "rr.gguf"), RR)
    with serve_client(root, tmp_path_factory.mktemp("rerank-home")) as client:
        yield client


def rerank(client: httpx.Client, path: str = "/v1/rerank", **extra: object) -> httpx.Response:
    return client.post(path, json={"model": RR, "query": "what are cats?", "documents": DOCS, **extra})


def test_results_are_sorted_by_relevance_with_every_index(rr: httpx.Client) -> None:
    r = rerank(rr)
    assert r.status_code == 200, r.text
    body = r.json()
    results = body["results"]
    assert sorted(x["index"] for x in results) == list(range(len(DOCS)))
    scores = [x["relevance_score"] for x in results]
    assert scores == sorted(scores, reverse=True)
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert body["usage"]["prompt_tokens"] > len(DOCS)
    assert "document" not in results[0]


def test_every_path_and_top_n_and_documents(rr: httpx.Client) -> None:
    full = rerank(rr).json()["results"]
    for path in PATHS:
        r = rerank(rr, path, top_n=2, return_documents=True)
        assert r.status_code == 200, (path, r.text)
        top = r.json()["results"]
        assert [x["index"] for x in top] == [x["index"] for x in full[:2]]
        assert [x["document"]["text"] for x in top] == [DOCS[x["index"]] for x in top]


def test_document_objects_and_many_documents_batched(rr: httpx.Client) -> None:
    many = [f"{d} #{i}" for i, d in enumerate(DOCS * 9)]  # 45 pairs: more than one batch
    r = rr.post("/v1/rerank", json={"model": RR, "query": "cats", "documents": [{"text": d} for d in many]})
    assert r.status_code == 200, r.text
    by_index = {x["index"]: x["relevance_score"] for x in r.json()["results"]}
    assert len(by_index) == len(many)
    alone = rr.post("/v1/rerank", json={"model": RR, "query": "cats", "documents": [many[40]]}).json()
    assert alone["results"][0]["relevance_score"] == pytest.approx(by_index[40], abs=1e-3)


def test_score_one_against_many_and_pairwise(rr: httpx.Client) -> None:
    ranked = {x["index"]: x["relevance_score"] for x in rerank(rr).json()["results"]}
    r = rr.post("/score", json={"model": RR, "text_1": "what are cats?", "text_2": DOCS})
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert [d["index"] for d in data] == list(range(len(DOCS)))
    assert [d["score"] for d in data] == pytest.approx([ranked[i] for i in range(len(DOCS))], abs=1e-4)
    pairwise = rr.post("/v1/score", json={"model": RR, "text_1": ["what are cats?", "weather?"],
                                          "text_2": [DOCS[0], DOCS[3]]})
    assert pairwise.status_code == 200, pairwise.text
    assert pairwise.json()["data"][0]["score"] == pytest.approx(ranked[0], abs=1e-4)
    bad = rr.post("/score", json={"model": RR, "text_1": ["a", "b"], "text_2": ["c", "d", "e"]})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "text_2"


def test_bad_input_is_a_clear_400(rr: httpx.Client) -> None:
    for body in ({"model": RR, "query": "q", "documents": []},
                 {"model": RR, "query": "", "documents": ["d"]},
                 {"model": RR, "query": "q", "documents": ["d"], "top_n": 0},
                 {"model": RR, "documents": ["d"]}):
        r = rr.post("/v1/rerank", json=body)
        assert r.status_code == 400, (body, r.text)
        assert r.json()["error"]["message"]
    unknown = rr.post("/v1/rerank", json={"model": "ai/nope", "query": "q", "documents": ["d"]})
    assert unknown.status_code == 404


def test_configured_mode_decides(rr: httpx.Client) -> None:
    assert rr.post("/engines/configure", json={"model": RR, "mode": "completion"}).status_code == 200
    try:
        refused = rerank(rr)
        assert refused.status_code == 400 and "cannot rerank" in refused.json()["error"]["message"]
        modes = {m["model_name"]: m["mode"] for m in rr.get("/engines/ps").json()}
        assert modes["tiny-rerank"] == "completion"  # loaded by the earlier tests; switched at once
    finally:
        assert rr.post("/engines/configure", json={"model": RR, "mode": "reranking"}).status_code == 200
    assert rerank(rr).status_code == 200
    bad = rr.post("/engines/configure", json={"model": RR, "mode": "dreaming"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "mode"


def test_a_model_that_cannot_rerank_is_refused(http: httpx.Client) -> None:
    r = http.post("/v1/rerank", json={"model": SMOL, "query": "q", "documents": ["d"]})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["param"] == "model" and "cannot rerank" in error["message"]
    assert http.post("/score", json={"model": SMOL, "text_1": "q", "text_2": "d"}).status_code == 400


async def _at_once(url: str, n: int, path: str, body: dict[str, object]) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=url, timeout=180) as client:
        return list(await asyncio.gather(*(client.post(path, json=body) for _ in range(n))))


BUSY_DOCS = [f"sentence number {i} " * 20 for i in range(12)]


@pytest.mark.parametrize(("path", "body"), [
    ("/v1/rerank", {"model": RR, "query": "q", "documents": BUSY_DOCS}),
    ("/score", {"model": RR, "text_1": "q", "text_2": BUSY_DOCS}),
])
def test_rerank_and_score_are_refused_past_the_queue(rr: httpx.Client, path: str,
                                                     body: dict[str, object]) -> None:
    """The embedding contexts' bounded wait (mr.server.embedding.turn) holds for rerank and score
    too: without it all 40 would queue (and be 200s), however long the wait."""
    assert rr.post(path, json=body).status_code == 200  # loaded, contexts made
    responses = asyncio.run(_at_once(str(rr.base_url), 40, path, body))
    statuses = [r.status_code for r in responses]
    assert set(statuses) == {200, 503}, statuses
    assert statuses.count(200) >= 9  # the one running and the 8 that may wait
    refused = next(r for r in responses if r.status_code == 503)
    assert refused.headers["retry-after"] == "1"
    assert "too many embedding requests are waiting" in refused.json()["error"]["message"]
    assert rr.post(path, json=body).status_code == 200
