"""Nothing walks around the balancer (RELIABILITY.md 36): through deploy/haproxy.cfg, store and
runtime changes and the request log are refused in every spelling of their paths, while
inference goes through; and the replicas refuse them on their own to a client that came through
a proxy, so that a balancer without the rules (or a rule with a hole) still changes nothing."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from _cluster import CONFIG, MODEL, Cluster

CONFIGURE = {"model": MODEL, "parallel": 3}
UNLOAD = {"all": True}
PULL = {"model": "example.invalid/x/y"}
CREATE = {"from": "example.invalid/x/y"}
# (method, path, body): each reached a replica through the balancer before, or is a spelling of one
# that did (`//x`, `/x/`, `/a//b`, %XX of a letter, %2F, case, DMR's /engines/llama.cpp prefix).
CONFIGURE_SPELLINGS = ["/engines/configure", "//engines/configure", "/engines/configure/",
                       "/engines//configure", "/engines/%63onfigure", "/engines%2Fconfigure",
                       "/engines%2fconfigure", "/Engines/CONFIGURE", "/engines/_configure",
                       "/engines/llama.cpp/configure", "/engines/llama.cpp//_configure/"]
REQUESTS_SPELLINGS = ["/engines/requests", "//engines/requests", "/engines/requests/",
                      "/engines/%72equests", "/engines%2Frequests", "/ENGINES/Requests",
                      "/engines/llama.cpp/requests"]
ADMIN = [
    *[("POST", path, CONFIGURE) for path in CONFIGURE_SPELLINGS],
    *[("GET", path, None) for path in REQUESTS_SPELLINGS],
    ("POST", "/engines/unload", UNLOAD), ("POST", "/engines/%75nload/", UNLOAD),
    ("POST", "/engines/llama.cpp/unload", UNLOAD),
    ("POST", "/api/pull", PULL), ("POST", "//api/pull", PULL), ("POST", "/api/pull/", PULL),
    ("POST", "/api%2Fpull", PULL), ("POST", "/API/Pull", PULL), ("POST", "/api/%70ull", PULL),
    ("DELETE", "/api/delete", {"model": MODEL}),
    ("POST", "/models/create", CREATE), ("POST", "//models/create", CREATE),
    ("POST", "/%6Dodels/create", CREATE), ("POST", "/models%2Fcreate", CREATE),
    ("POST", f"/models/{MODEL}/tag", None), ("DELETE", f"/models/{MODEL}", None),
    ("PUT", f"/models/{MODEL}", None), ("PATCH", "/engines/configure", CONFIGURE),
]


def _send(url: str, method: str, path: str, body: object) -> httpx.Response:
    # The whole URL as a string: httpx then sends the path's bytes as written (`//`, %XX, case).
    return _client().request(method, url + path, json=body, params={"repo": "me/evil", "tag": "x"})


@functools.cache
def _client() -> httpx.Client:
    # one client for the module: a new one per request costs more than the request
    return httpx.Client(timeout=60)


def _chat_works(url: str) -> None:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    for prefix in ("/v1", "/engines/v1", "/engines/llama.cpp/v1"):  # OpenAI's and DMR's paths
        r = httpx.post(f"{url}{prefix}/chat/completions", json=body, timeout=120)
        assert r.status_code == 200, (prefix, r.text)
        assert r.json()["choices"][0]["message"]["content"] is not None


def _unchanged(cluster: Cluster) -> None:
    """No replica wrote a model setting (configure) or lost its model (delete)."""
    for name, url in cluster.replica_urls.items():
        assert not (cluster.homes[name] / "model-settings.json").exists(), name
        assert httpx.get(f"{url}/models/{MODEL}", timeout=30).status_code == 200


def test_the_balancer_alone_refuses_admin_routes_in_every_spelling(balancer: str) -> None:
    # No replica is up: a request the rules let by would get HAProxy's 503, not its 403.
    let_by = [(method, path, r.status_code) for method, path, body in ADMIN
              if (r := _send(balancer, method, path, body)).status_code != 403
              or r.json()["error"]["code"] != "balancer_forbidden"]
    assert not let_by
    for path in ("/v1/models", "/api/tags", "/models", f"/models/{MODEL}"):
        assert _client().get(balancer + path).status_code == 503, path  # let by, to no one


@pytest.mark.slow
def test_admin_routes_are_refused_at_the_balancer_in_every_spelling(clusters: Callable[..., Cluster]) -> None:
    cluster = clusters(replica_args=["--trusted-proxy", "127.0.0.1"])  # as deploy/README.md runs them
    answers = [(method, path, _send(cluster.url, method, path, body)) for method, path, body in ADMIN]
    # refused by the balancer itself (no replica named), in mr's error envelope
    let_by = [(method, path, r.status_code, r.headers.get("x-mr-replica")) for method, path, r in answers
              if r.status_code != 403 or "x-mr-replica" in r.headers
              or r.headers.get("content-type") != "application/json"
              or r.json()["error"]["code"] != "balancer_forbidden"]
    assert not let_by
    _chat_works(cluster.url)
    _unchanged(cluster)
    # These spellings are live routes on a replica (for its local operator), not 404s:
    direct = cluster.replica_urls["mr1"]
    assert _send(direct, "GET", "//engines/requests/", None).status_code == 200
    assert _send(direct, "POST", "/engines//%63onfigure/", CONFIGURE).status_code == 200


def _without_deny_rules(tmp_path: Path) -> Path:
    """deploy/haproxy.cfg with its refusals taken out (its forwarding headers kept)."""
    lines = CONFIG.read_text().splitlines(keepends=True)
    kept = [line for line in lines if not line.lstrip().startswith("http-request deny")]
    assert len(kept) == len(lines) - 1
    path = tmp_path / "haproxy-no-deny.cfg"
    path.write_text("".join(kept))
    return path


@pytest.mark.slow
def test_replicas_refuse_a_proxied_client_even_where_the_balancer_lets_it_by(
        clusters: Callable[..., Cluster], tmp_path: Path) -> None:
    """Replicas on loopback, no API key, no --trusted-proxy: every client of the balancer
    reaches them from 127.0.0.1, yet is not local (X-Forwarded-For from a proxy not trusted)."""
    cluster = clusters(config=_without_deny_rules(tmp_path))
    refused = set()
    for method, path, body in ADMIN:
        r = _send(cluster.url, method, path, body)
        if r.status_code in (404, 405):  # a spelling or a method mr does not route (case, PUT, ...)
            continue
        assert r.status_code == 403, (method, path, r.status_code, r.text)
        assert r.json()["error"]["code"] == "loopback_only", (method, path)
        assert "x-mr-replica" in r.headers  # a replica refused it
        refused.add(path)
    assert refused >= {"//engines/configure", "/engines/configure/", "/engines//configure",
                       "/engines/%63onfigure", "/engines%2Fconfigure", "//api/pull", "/api/pull/",
                       "/engines/requests", "//engines/requests", "/models/create"}  # all answered 200
    _chat_works(cluster.url)
    _unchanged(cluster)
    assert httpx.get(cluster.replica_urls["mr2"] + "/engines/requests").status_code == 200  # direct
