"""deploy/haproxy.cfg as shipped, run by a real HAProxy (Debian's package) in front of two real
`mr serve` replicas on loopback ports: requests are spread, one conversation stays on one replica
(its prefix cache is hit), and killing a replica loses no request that had not started streaming."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from _cluster import MODEL, Cluster

pytestmark = pytest.mark.slow


@pytest.fixture
def cluster(clusters: Callable[..., Cluster]) -> Cluster:
    return clusters()


def _chat(client: httpx.Client, messages: list[dict], headers: dict | None = None,
          **extra: object) -> httpx.Response:
    body = {"model": MODEL, "messages": messages, "max_tokens": 8, "temperature": 0, **extra}
    return client.post("/v1/chat/completions", json=body, headers=headers or {})


def test_requests_are_spread_and_a_conversation_stays_on_its_replica(cluster: Cluster) -> None:
    with httpx.Client(base_url=cluster.url, timeout=120) as client:
        served = {_chat(client, [{"role": "user", "content": f"hello {i}"}]).headers["x-mr-replica"]
                  for i in range(6)}
        assert served == {"mr1", "mr2"}  # no key: round robin
        for session in range(4):
            # by header, or by the OpenAI `user` field
            key = ({"headers": {"X-Session-Id": f"s{session}"}} if session % 2
                   else {"user": f"user-{session}"})
            messages = [{"role": "user", "content": f"Session {session}: " + "tell me more, " * 60}]
            replicas, previous = set(), 0
            for turn in range(3):
                response = _chat(client, messages, **key)
                assert response.status_code == 200, response.text
                replicas.add(response.headers["x-mr-replica"])
                usage = response.json()["usage"]
                if turn:  # the whole conversation so far came from that replica's cache
                    assert usage["prompt_tokens_details"]["cached_tokens"] >= previous - 1
                previous = usage["prompt_tokens"]
                reply = response.json()["choices"][0]["message"]["content"]
                messages += [{"role": "assistant", "content": reply},
                             {"role": "user", "content": f"and then {turn}?"}]
            assert len(replicas) == 1, f"session {session} moved: {replicas}"


def test_killing_a_replica_loses_no_request_that_had_not_started_streaming(cluster: Cluster) -> None:
    """A streamed request has started once mr accepted it (it sends the headers and the role
    delta at once, before a token): from then on it cannot be retried. Every other request is."""
    key = {"X-Session-Id": "doomed"}
    with httpx.Client(base_url=cluster.url, timeout=180) as client:
        victim = _chat(client, [{"role": "user", "content": "hi"}], key).headers["x-mr-replica"]
        streamed = b""
        long_answer = {"model": MODEL, "messages": [{"role": "user", "content": "go"}], "stream": True,
                       "max_tokens": 3500, "ignore_eos": True, "temperature": 0}
        with ThreadPoolExecutor(8) as pool, \
                client.stream("POST", "/v1/chat/completions", json=long_answer, headers=key) as stream:
            assert stream.headers["x-mr-replica"] == victim
            chunks = stream.iter_bytes()
            streamed += next(chunks)  # started: this one is lost with its replica
            # Queued behind it on the same replica (one slot): no byte answered yet.
            queued = [pool.submit(_chat, client, [{"role": "user", "content": f"q{i}"}], key)
                      for i in range(4)]
            time.sleep(1.0)
            cluster.kill(victim)
            # Sent right after, before the health checks notice: refused, then redispatched.
            later = [pool.submit(_chat, client, [{"role": "user", "content": f"l{i}"}], key,
                                 stream=bool(i % 2)) for i in range(4)]
            with pytest.raises(httpx.HTTPError):
                for chunk in chunks:
                    streamed += chunk
            answers = [f.result() for f in (*queued, *later)]
        assert b"[DONE]" not in streamed
        for response in answers:
            assert response.status_code == 200, response.text
            assert response.headers["x-mr-replica"] != victim
        assert all(b"[DONE]" in r.content for r in answers[5::2])  # the streams came whole
