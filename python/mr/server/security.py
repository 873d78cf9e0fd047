"""Request screening before any route runs: one ASGI middleware, no allocations on the happy path.

- Host header allow-list (DNS rebinding): loopback names, the bind address (for a wildcard
  bind, the machine's name and addresses), configured extras; always on (`*` switches it off).
- Without an API key, routes that change the store or the runtime, and the request log (other
  clients' prompts), answer local clients only (see mr.server.exposure), on any bind address.
  Local means loopback at every hop: a request that came through a proxy counts as its forwarded
  client when the proxy is trusted (--trusted-proxy), else as an unknown, remote one
  (mr.server.proxies). The route is judged as Litestar will route it (`//x`, `/x/` are `/x`;
  the ASGI server has already decoded `%2F`, `%63`).
- CORS: loopback origins only unless configured; preflights answered here; requests from other
  origins refused (403) so a web page cannot drive the API from a visitor's browser.
- 415 for POST/PUT/PATCH bodies that are not JSON (a cross-site form or text/plain POST). A body
  with no Content-Type at all is read as JSON on Ollama's inference routes only: Ollama's clients
  (litellm's ollama providers) send none, and Ollama answers them. Everywhere else it stays a 415:
  a cross-site page can send a typeless POST without a preflight, and many routes change state
  (pull, push, delete, create, copy, configure, unload, stored responses).
- Optional API key (Authorization: Bearer KEY or x-api-key), compared in constant time.
The body size limit is Litestar's `request_max_body_size` (chunked bodies included).
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from urllib.parse import urlsplit

from litestar.enums import ScopeType
from litestar.types import (
    ASGIApp,
    HTTPResponseBodyEvent,
    HTTPResponseStartEvent,
    HTTPScope,
    Message,
    Receive,
    Scope,
    Send,
)
from litestar.utils.path import normalize_path

from mr.server.errors import envelope
from mr.server.exposure import is_mutating, machine_names
from mr.server.proxies import client_route, is_local, parse_networks
from mr.server.settings import LOOPBACK, Settings

DEFAULT_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "host.docker.internal",
                           "model-runner.docker.internal"})
OPEN_PATHS = frozenset({"/", "/health", "/healthz", "/version"})  # liveness probes need no key
BODY_METHODS = frozenset({b"POST", b"PUT", b"PATCH"})
# Ollama's inference routes: Ollama's clients may send no Content-Type there. Exact paths, so another
# spelling is refused rather than let through. OpenAI's and Anthropic's clients always declare JSON,
# so their routes keep the stricter rule.
UNTYPED_JSON_POSTS = frozenset({"/api/chat", "/api/generate", "/api/embed", "/api/embeddings"})
CORS_METHODS = b"GET, POST, PUT, PATCH, DELETE, OPTIONS"
PRIVATE_PATHS = frozenset({"/engines/requests"})  # every client's prompts and response ids


def _host_name(value: str) -> str:
    """`example.com:8080` -> `example.com`, `[::1]:80` -> `::1`."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def _is_loopback_origin(origin: str) -> bool:
    try:
        parts = urlsplit(origin)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and (parts.hostname or "") in LOOPBACK


class Policy:
    def __init__(self, settings: Settings) -> None:
        self.api_key = settings.api_key.encode() if settings.api_key else None
        extra = {_host_name(h) for h in settings.allowed_hosts}
        self.any_host = "*" in extra
        self.hosts = DEFAULT_HOSTS | extra | {_host_name(h) for h in machine_names(settings.host)}
        # On a loopback bind too: a balancer on this host makes remote clients look local.
        self.local_mutations_only = self.api_key is None
        self.trusted_proxies = parse_networks(settings.trusted_proxies)
        self.any_origin = "*" in settings.cors_origins
        self.origins = frozenset(o.rstrip("/").lower() for o in settings.cors_origins)

    def host_ok(self, host: str | None) -> bool:
        if self.any_host:
            return True
        return host is not None and _host_name(host) in self.hosts

    def origin_ok(self, origin: str) -> bool:
        return self.any_origin or origin.rstrip("/").lower() in self.origins or _is_loopback_origin(origin)

    def key_ok(self, headers: dict[bytes, bytes]) -> bool:
        if self.api_key is None:
            return True
        given = headers.get(b"x-api-key", b"")
        auth = headers.get(b"authorization", b"")
        if auth[:7].lower() == b"bearer ":
            given = auth[7:].strip()
        return hmac.compare_digest(given, self.api_key)

    def is_local(self, scope: Scope) -> bool:
        return is_local(client_route(scope.get("client"), scope["headers"], self.trusted_proxies))


def route_path(path: str) -> str:
    """The path Litestar routes: no repeated or trailing slashes (their usual absence costs nothing)."""
    if "//" in path or (path.endswith("/") and path != "/"):
        return normalize_path(path)
    return path


def local_only(scope: HTTPScope) -> bool:
    """A route that changes the store or the runtime, or shows other clients' requests."""
    path = route_path(scope["path"])
    return is_mutating(scope["method"], path) or path in PRIVATE_PATHS


def _is_json(content_type: bytes) -> bool:
    media = content_type.split(b";", 1)[0].strip().lower()
    return media == b"application/json" or media.endswith(b"+json")


def _has_body(headers: dict[bytes, bytes]) -> bool:
    length = headers.get(b"content-length")
    if length is not None:
        return length.strip() not in (b"0", b"")
    return b"transfer-encoding" in headers


Rejection = tuple[int, bytes, list[tuple[bytes, bytes]]]
UNSUPPORTED = "request bodies must be JSON (Content-Type: application/json)"
LOCAL_ONLY = ("this route changes the store or the runtime, or shows other clients' requests: it needs "
              "a loopback client (not through a proxy that mr does not trust) or an API key")


async def _reply(send: Send, rejection: Rejection) -> None:
    status, body, extra = rejection
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *extra]
    start: HTTPResponseStartEvent = {"type": "http.response.start", "status": status, "headers": headers}
    whole: HTTPResponseBodyEvent = {"type": "http.response.body", "body": body, "more_body": False}
    await send(start)
    await send(whole)


def _cors_headers(origin: bytes) -> list[tuple[bytes, bytes]]:
    return [(b"access-control-allow-origin", origin), (b"vary", b"Origin"),
            (b"access-control-allow-credentials", b"true")]


def _preflight(cors: list[tuple[bytes, bytes]], headers: dict[bytes, bytes]) -> Rejection:
    asked = headers.get(b"access-control-request-headers", b"authorization, content-type")
    return 204, b"", [*cors, (b"access-control-allow-methods", CORS_METHODS),
                      (b"access-control-allow-headers", asked), (b"access-control-max-age", b"600")]


def two_framings(headers: dict[bytes, bytes]) -> Rejection | None:
    """Content-Length with Transfer-Encoding: a proxy in front may read another request boundary
    (smuggling). A 400 that closes the connection."""
    if b"content-length" in headers and b"transfer-encoding" in headers:
        body = envelope(400, "Content-Length and Transfer-Encoding together are refused", None,
                        "bad_framing")
        return 400, body, [(b"connection", b"close")]
    return None


def refuse_two_framings(app: ASGIApp) -> ASGIApp:
    """The framing rule around the whole application, so that it holds on every path: Litestar runs
    its middleware only for a matched route, not for a 404 or a 405 (mr.server.hygiene uses it)."""

    async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
        rejection = two_framings(dict(scope["headers"])) if scope["type"] == ScopeType.HTTP else None
        if rejection is not None:
            await _reply(send, rejection)
            return
        await app(scope, receive, send)

    return guarded


def screen(policy: Policy, scope: HTTPScope) -> tuple[Rejection | None, list[tuple[bytes, bytes]]]:
    """(a response to send instead of running the app, or None; CORS headers to add)."""
    headers = dict(scope["headers"])
    framing = two_framings(headers)
    if framing is not None:
        return framing, []
    host = headers.get(b"host")
    if not policy.host_ok(host.decode("latin-1") if host is not None else None):
        return (403, envelope(403, "host not allowed", None, "host_not_allowed"), []), []
    origin = headers.get(b"origin")
    cors: list[tuple[bytes, bytes]] = []
    if origin is not None:
        if not policy.origin_ok(origin.decode("latin-1")):
            return (403, envelope(403, "origin not allowed", None, "origin_not_allowed"), []), []
        cors = _cors_headers(origin)
        if scope["method"] == "OPTIONS" and b"access-control-request-method" in headers:
            return _preflight(cors, headers), cors
    if scope["path"] not in OPEN_PATHS and not policy.key_ok(headers):
        body = envelope(401, "missing or invalid API key", None, "invalid_api_key")
        return (401, body, [*cors, (b"www-authenticate", b"Bearer")]), cors
    if policy.local_mutations_only and local_only(scope) and not policy.is_local(scope):
        body = envelope(403, LOCAL_ONLY, None, "loopback_only")
        return (403, body, cors), cors
    if _refused_body(scope, headers):
        return (415, envelope(415, UNSUPPORTED, None, "unsupported_media_type"), cors), cors
    return None, cors


def _refused_body(scope: HTTPScope, headers: dict[bytes, bytes]) -> bool:
    """A body that is not declared JSON (or, on an inference route, not declared at all)."""
    if scope["method"].encode() not in BODY_METHODS or not _has_body(headers):
        return False
    content_type = headers.get(b"content-type")
    if content_type is None:
        return not (scope["method"] == "POST" and scope["path"] in UNTYPED_JSON_POSTS)
    return not _is_json(content_type)


def security_middleware(settings: Settings) -> Callable[[ASGIApp], ASGIApp]:
    policy = Policy(settings)

    def factory(app: ASGIApp) -> ASGIApp:
        async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != ScopeType.HTTP:
                await app(scope, receive, send)
                return
            rejection, cors = screen(policy, scope)
            if rejection is not None:
                await _reply(send, rejection)
                return
            await app(scope, receive, _with_headers(send, cors) if cors else send)

        return middleware

    return factory


def _with_headers(send: Send, extra: list[tuple[bytes, bytes]]) -> Send:
    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), *extra]}
        await send(message)

    return wrapped
