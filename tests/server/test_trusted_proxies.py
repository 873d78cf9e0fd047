"""Who counts as a local client behind a proxy (RELIABILITY.md 36, mr.server.proxies): a forwarded
address is believed from a trusted proxy only, a request through any other proxy has a remote
client, and the routes kept for local clients (store and runtime changes, the request log) are
judged in whatever spelling Litestar would route (`//x`, `/x/`, `/a//b`, %XX)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import httpx
import pytest
from click.testing import CliRunner
from litestar.types import Scope

from mr.server import Settings
from mr.server.proxies import client_route, is_local, parse_networks
from mr.server.security import Policy, screen
from support.serving import free_port, start, wait_healthy

LOOP = ("127.0.0.1", 50000)
REMOTE = "203.0.113.9"
XFF = b"x-forwarded-for"
SPELLINGS = [("//engines/unload", "//engines/requests"), ("/engines/unload/", "/engines/requests/"),
             ("/engines//unload", "/engines//requests"), ("/engines/%75nload", "/engines/%72equests"),
             ("/engines%2Funload", "/engines%2Frequests")]


def _route(client: tuple[str, int] | None, headers: list[tuple[bytes, bytes]],
           trusted: tuple[str, ...] = ("127.0.0.1",)) -> list[str] | None:
    route = client_route(client, headers, parse_networks(trusted))
    return None if route is None else [str(address) for address in route]


@pytest.mark.parametrize(("client", "headers", "trusted", "route"), [
    (LOOP, [], (), ["127.0.0.1"]),  # no proxy: the socket's peer
    (LOOP, [(XFF, REMOTE.encode())], ("127.0.0.1",), [REMOTE, "127.0.0.1"]),  # the forwarded client
    (LOOP, [(XFF, REMOTE.encode())], (), None),  # through a proxy mr was not told to trust: unknown
    (LOOP, [(XFF, b"127.0.0.1")], (), None),  # ... even when it says loopback
    (LOOP, [(XFF, b"127.0.0.1, " + REMOTE.encode())], ("127.0.0.1",), [REMOTE, "127.0.0.1"]),  # spoof ignored
    (LOOP, [(XFF, b"127.0.0.1"), (XFF, REMOTE.encode())], ("127.0.0.1",), [REMOTE, "127.0.0.1"]),  # 2 lines
    (LOOP, [(XFF, b"198.51.100.1, 10.0.0.7")], ("127.0.0.0/8", "10.0.0.0/8"),
     ["198.51.100.1", "10.0.0.7", "127.0.0.1"]),  # a chain of trusted proxies
    (LOOP, [(b"forwarded", b'for="[::1]:4711";proto=http')], ("127.0.0.1",), ["::1", "127.0.0.1"]),
    (LOOP, [(b"forwarded", b"for=_hidden")], ("127.0.0.1",), None),  # names no address
    (LOOP, [(b"forwarded", b"for=unknown")], ("127.0.0.1",), None),
    (LOOP, [(XFF, b"")], ("127.0.0.1",), None),
    (LOOP, [(XFF, b"127.0.0.1"), (b"forwarded", f"for={REMOTE}".encode())], ("127.0.0.1",), None),  # disagree
    (LOOP, [(b"x-real-ip", b"127.0.0.1")], ("127.0.0.1",), None),  # a proxy, naming no chain mr reads
    (("10.0.0.5", 1), [(XFF, b"127.0.0.1")], ("10.0.0.0/8",), ["127.0.0.1", "10.0.0.5"]),
    (("::ffff:127.0.0.1", 1), [], (), ["127.0.0.1"]),
    (None, [], (), None),
])
def test_the_client_of_a_proxied_request(client: tuple[str, int] | None, headers: list[tuple[bytes, bytes]],
                                         trusted: tuple[str, ...], route: list[str] | None) -> None:
    assert _route(client, headers, trusted) == route


def test_local_means_loopback_at_every_hop() -> None:
    # a balancer on another machine that forwards 127.0.0.1 names its own loopback, not ours
    remote_proxy = client_route(("10.0.0.5", 1), [(XFF, b"127.0.0.1")], parse_networks(["10.0.0.5"]))
    assert not is_local(remote_proxy)
    assert is_local([ipaddress.ip_address("::1"), ipaddress.ip_address("127.0.0.1")])
    assert not is_local(None)


def _scope(method: str, path: str, client: tuple[str, int], headers: list[tuple[bytes, bytes]]) -> Scope:
    return cast(Scope, {"type": "http", "method": method, "path": path, "client": client,
                        "headers": [(b"host", b"127.0.0.1"), *headers]})


@pytest.mark.parametrize(("method", "path"), [
    ("POST", "/engines/unload"), ("POST", "//engines/unload"), ("POST", "/engines/unload/"),
    ("POST", "/engines//unload"), ("POST", "//api/pull/"), ("POST", "/models//create"),
    ("GET", "/engines/requests"), ("GET", "//engines/requests/"), ("GET", "/engines//requests"),
])
def test_every_spelling_of_a_local_route_is_judged(method: str, path: str) -> None:
    policy = Policy(Settings(trusted_proxies=["127.0.0.1"]))  # on a loopback bind, no key
    remote = _scope(method, path, LOOP, [(XFF, REMOTE.encode())])
    rejection, _ = screen(policy, remote)
    assert rejection is not None and rejection[0] == 403 and b"loopback_only" in rejection[1]
    assert screen(policy, _scope(method, path, LOOP, []))[0] is None
    assert screen(policy, _scope(method, path, LOOP, [(XFF, b"::1")]))[0] is None
    keyed = Policy(Settings(api_key="k"))
    with_key = _scope(method, path, LOOP, [(XFF, REMOTE.encode()), (b"authorization", b"Bearer k")])
    assert screen(keyed, with_key)[0] is None


def test_inference_stays_open_to_proxied_clients() -> None:
    policy = Policy(Settings())
    for method, path in [("POST", "/v1/chat/completions"), ("GET", "/v1/models"), ("GET", "/engines/ps")]:
        scope = _scope(method, path, LOOP, [(XFF, REMOTE.encode()), (b"content-type", b"application/json")])
        assert screen(policy, scope)[0] is None, path


def test_trusted_proxies_are_checked_where_they_are_given() -> None:
    env = Settings.from_env({"MR_TRUSTED_PROXIES": "127.0.0.1, 10.0.0.0/8,[::1]"})
    assert env.trusted_proxies == ["127.0.0.1", "10.0.0.0/8", "[::1]"]
    with pytest.raises(ValueError, match="not an IP address"):
        Settings.from_env({"MR_TRUSTED_PROXIES": "balancer.lan"})
    from mr.cli.serve import serve

    result = CliRunner().invoke(serve, ["--trusted-proxy", "balancer.lan"])
    assert result.exit_code == 2 and "not an IP address" in result.output


@pytest.fixture
def env(store_root: Path, tmp_path: Path) -> dict[str, str]:
    return {"MR_MODELS_DIR": str(store_root), "MR_HOME": str(tmp_path), "MR_CTX_SIZE": "2048"}


@pytest.fixture
def trusting(env: dict[str, str]) -> Iterator[str]:
    """A real `mr serve` on loopback, no key, trusting a balancer at 127.0.0.1."""
    port = free_port()
    proc = start(["--port", str(port), "--trusted-proxy", "127.0.0.1", "--quiet"], env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _admin(url: str, headers: dict[str, str], unload: str = "/engines/unload",
           requests: str = "/engines/requests") -> list[int]:
    """The statuses of a runtime change and of a read of the request log."""
    return [httpx.post(url + unload, json={"all": True}, headers=headers, timeout=30).status_code,
            httpx.get(url + requests, headers=headers, timeout=30).status_code]


def test_a_trusted_proxy_request_is_its_forwarded_client(trusting: str) -> None:
    assert _admin(trusting, {}) == [200, 200]  # a loopback client, no proxy
    assert _admin(trusting, {"X-Forwarded-For": "127.0.0.1"}) == [200, 200]  # forwarded: loopback
    assert _admin(trusting, {"Forwarded": 'for="[::1]"'}) == [200, 200]
    # mr's rule, not uvicorn's (which would make ::1 the peer, a proxy mr was not told to trust)
    assert _admin(trusting, {"X-Forwarded-For": "::1"}) == [200, 200]
    for headers in ({"X-Forwarded-For": REMOTE}, {"Forwarded": f"for={REMOTE}"},
                    {"X-Forwarded-For": f"127.0.0.1, {REMOTE}"},  # what the client wrote, then its address
                    {"X-Forwarded-For": "127.0.0.1", "Forwarded": f"for={REMOTE}"}):
        assert _admin(trusting, headers) == [403, 403], headers
        r = httpx.post(trusting + "/engines/unload", json={"all": True}, headers=headers)
        assert r.json()["error"]["code"] == "loopback_only"
    for unload, requests in SPELLINGS:  # as Litestar routes them; each was let by before
        assert _admin(trusting, {"X-Forwarded-For": REMOTE}, unload, requests) == [403, 403], unload
    chat = {"model": "ai/tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    r = httpx.post(trusting + "/v1/chat/completions", json=chat, headers={"X-Forwarded-For": REMOTE},
                   timeout=60)
    assert r.status_code == 200, r.text  # inference is for everyone


def test_without_trusted_proxies_a_proxied_client_is_never_local(env: dict[str, str]) -> None:
    port = free_port()
    proc = start(["--port", str(port), "--quiet"], env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc)
        assert _admin(url, {}) == [200, 200]
        assert _admin(url, {"X-Forwarded-For": "127.0.0.1"}) == [403, 403]
        assert _admin(url, {"X-Real-IP": "127.0.0.1"}) == [403, 403]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
