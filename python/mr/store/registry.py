"""The registry client: oras' session, plus mr's retries, redirects, auth scoping and limits.

oras provides the HTTP session (cookies refused) and the challenge parser; mr adds capped
exponential backoff honouring Retry-After on network errors, 429 and 5xx, manual redirects that
never carry credentials to another host or downgrade to plain HTTP, timeouts so a stalled
transfer fails, and size caps on every body it reads whole. Credentials go to their registry
only: never to a host a redirect led to (its 401 is an error, not a challenge to answer), and to
a token realm only over HTTPS or on loopback.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Protocol, TypeVar
from urllib.parse import urljoin, urlsplit

import oras.provider
import requests
from oras.auth.utils import authHeader, parse_auth_header
from requests.adapters import HTTPAdapter

from mr import config
from mr.store import credentials
from mr.store import digest as digests
from mr.store.artifact import MANIFEST_TYPES, MAX_MANIFEST_BYTES
from mr.store.errors import (
    DigestMismatchError,
    InvalidManifestError,
    RegistryAuthError,
    RegistryError,
    RemoteModelNotFoundError,
)
from mr.store.reference import (
    HUGGING_FACE,
    Reference,
    is_insecure,
    is_listed_insecure,
    is_loopback,
    wire_host,
)
from mr.store.transfer import TransferGuard

RETRY_STATUSES = (429, 500, 502, 503, 504)
REDIRECTS = (301, 302, 303, 307, 308)
MAX_REDIRECTS = 10
NETWORK_ERRORS = (requests.ConnectionError, requests.Timeout,
                  requests.exceptions.ChunkedEncodingError)
ACCEPT = ", ".join(MANIFEST_TYPES)
MAX_ERROR_BYTES = 64 * 1024  # a registry's error body: only its first messages are shown
MAX_TOKEN_BYTES = 1 << 20


@dataclass
class RetryPolicy:
    """Capped exponential backoff with jitter; Retry-After wins (capped too)."""

    attempts: int = 5
    base_s: float = 0.5
    cap_s: float = 30.0
    retry_after_cap_s: float = 120.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.retry_after_cap_s)
        return min(self.cap_s, self.base_s * 2.0**attempt) * (0.5 + random.random() / 2)


def retry_after_seconds(value: str | None) -> float | None:
    """Retry-After as delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class Readable(Protocol):
    """An upload body that requests reads in pieces (mr.store.push's file reader)."""

    def read(self, n: int = -1, /) -> bytes: ...


class _TimeoutAdapter(HTTPAdapter):
    """Every request through the session gets a (connect, read) timeout unless it names one."""

    def __init__(self, timeout: tuple[float, float]) -> None:
        super().__init__(pool_maxsize=8)
        self.timeout = timeout

    def send(self, request: requests.PreparedRequest, stream: bool = False,
             timeout: float | tuple[float, float] | tuple[float, None] | None = None,
             verify: bool | str = True, cert: bytes | str | tuple[bytes | str, bytes | str] | None = None,
             proxies: Mapping[str, str] | None = None) -> requests.Response:
        return super().send(request, stream=stream, verify=verify, cert=cert, proxies=proxies,
                            timeout=self.timeout if timeout is None else timeout)


@dataclass(frozen=True)
class Reply:
    """An answer read whole: status, headers and a body that was read with a size cap."""

    status_code: int
    headers: Mapping[str, str]  # requests' case-insensitive dict
    body: bytes


def read_capped(resp: requests.Response, limit: int,
                too_large: Exception | None = None) -> bytes:
    """At most `limit` bytes of a streamed body, never more in memory (requests itself would
    buffer any size): a longer body raises `too_large`, or is cut at `limit` without one."""
    declared = resp.headers.get("Content-Length", "")
    if too_large is not None and declared.isdigit() and int(declared) > limit:
        raise too_large
    body = bytearray()
    for chunk in resp.iter_content(64 * 1024):
        body += chunk
        if len(body) > limit:
            if too_large is not None:
                raise too_large
            break
    return bytes(body[:limit])


def _read(resp: requests.Response, limit: int = MAX_ERROR_BYTES,
          too_large: Exception | None = None) -> Reply:
    """`resp` read whole and closed: a 2xx body up to `limit`, any other up to MAX_ERROR_BYTES."""
    with resp:
        if 200 <= resp.status_code < 300:
            body = read_capped(resp, limit, too_large)
        else:
            try:
                body = read_capped(resp, MAX_ERROR_BYTES)
            except NETWORK_ERRORS:
                body = b""  # its status says what went wrong
    return Reply(resp.status_code, resp.headers, body)


def may_carry_credentials(url: str) -> bool:
    """Whether a registry's credentials may travel to `url`: over HTTPS, or over plain HTTP only
    to loopback or a host the user listed in MR_INSECURE_REGISTRIES. Not to `*.local` by default:
    anyone on the link can answer an mDNS name, and plain HTTP shows them the password."""
    parts = urlsplit(url)
    if parts.scheme == "https":
        return bool(parts.netloc)
    return parts.scheme == "http" and bool(parts.netloc) and (
        is_loopback(parts.netloc) or is_listed_insecure(parts.netloc)
    )


def _shown(text: str, limit: int = 100) -> str:
    """Text from a registry's reply, safe to print: printable and short."""
    return "".join(ch for ch in text if ch.isprintable())[:limit]


def _registry_message(reply: Reply) -> str:
    try:
        errors = json.loads(reply.body).get("errors") or []
        text = "; ".join(
            str(e.get("message") or e.get("code")) for e in errors if isinstance(e, dict)
        )
    except (ValueError, AttributeError, TypeError):  # not JSON, or not the spec's shape
        text = ""
    text = _shown(text, 200)
    return f"HTTP {reply.status_code}" + (f": {text}" if text else "")


def hf_token_header(registry: str, host: str, scheme: str) -> str | None:
    """`Bearer $HF_TOKEN` for Hugging Face itself (hf.co, or HF_ENDPOINT's host): never for a
    mirror of it (another host) nor any other registry, and never over plain HTTP off loopback."""
    token = config.text("HF_TOKEN")
    if not token or registry != HUGGING_FACE or host != wire_host(HUGGING_FACE):
        return None
    if not may_carry_credentials(f"{scheme}://{host}/"):
        return None
    return f"Bearer {token}"


def _reason(exc: BaseException) -> str:
    if isinstance(exc, requests.Timeout):
        return "timed out"
    if isinstance(exc, requests.exceptions.ChunkedEncodingError):
        return "connection broken"
    return "connection failed"


_Answer = TypeVar("_Answer", Reply, requests.Response)


class RegistryClient:
    """One registry host. Create one per pull or push; not shared between threads."""

    def __init__(
        self,
        registry: str,
        *,
        insecure: bool | None = None,
        retry: RetryPolicy | None = None,
        timeout: tuple[float, float] | None = None,
        sleep: Callable[[float], None] | None = None,
        basic_auth: str | None = None,
        guard: TransferGuard | None = None,
    ) -> None:
        self.registry = registry
        self.host = wire_host(registry)
        self.insecure = is_insecure(self.host) if insecure is None else insecure
        self.scheme = "http" if self.insecure else "https"
        self.retry = retry or RetryPolicy()
        self.guard = guard
        self.sleep = sleep or (guard.sleep if guard is not None else time.sleep)
        connect = config.number("MR_REGISTRY_CONNECT_TIMEOUT", 15.0)
        read = config.number("MR_REGISTRY_READ_TIMEOUT", 60.0)
        self.session = oras.provider.Registry(hostname=self.host, insecure=self.insecure).session
        adapter = _TimeoutAdapter(timeout or (connect, read))
        self.session.mount("https://", adapter)
        self.session.mount("http://", adapter)
        self._basic = (
            basic_auth if basic_auth is not None else credentials.lookup(registry, self.host)
        )
        self._auth_header: str | None = hf_token_header(registry, self.host, self.scheme)

    # -- URLs ---------------------------------------------------------------------------------
    def url(self, repository: str, kind: str, ref: str) -> str:
        return f"{self.scheme}://{self.host}/v2/{repository}/{kind}/{ref}"

    def uploads_url(self, repository: str) -> str:
        return f"{self.scheme}://{self.host}/v2/{repository}/blobs/uploads/"

    # -- transport ------------------------------------------------------------------------------
    def request(self, method: str, url: str, *, headers: dict[str, str] | None = None,
                body: Callable[[], Readable | bytes] | bytes | None = None, limit: int = MAX_ERROR_BYTES,
                too_large: Exception | None = None) -> Reply:
        """Send with auth, redirects and retries, and read the answer whole (see `_read`)."""
        return self._retrying(
            lambda: _read(self._send(method, url, dict(headers or {}), body), limit, too_large),
            f"cannot reach registry {self.host}")

    def stream(self, url: str, headers: dict[str, str]) -> requests.Response:
        """A GET whose body the caller reads (and closes), with auth, redirects and retries."""
        return self._retrying(lambda: self._send("GET", url, headers, None),
                              f"cannot reach registry {self.host}")

    def _retrying(self, attempt: Callable[[], _Answer], failed: str) -> _Answer:
        """`attempt` again after a network error, a 429 or a 5xx, with capped backoff (the
        registry's Retry-After wins); the last answer is returned whatever its status."""
        for n in range(self.retry.attempts):
            last = n == self.retry.attempts - 1
            self.check()
            try:
                answer = attempt()
            except NETWORK_ERRORS as exc:
                self.check()  # a guard that tripped explains the error: no retry
                if last:
                    raise RegistryError(f"{failed}: {_reason(exc)}") from exc
                self.sleep(self.retry.delay(n))
                continue
            if answer.status_code not in RETRY_STATUSES or last:
                return answer
            if isinstance(answer, requests.Response):
                answer.close()
            self.sleep(self.retry.delay(n, retry_after_seconds(answer.headers.get("Retry-After"))))
        raise AssertionError("unreachable")  # pragma: no cover

    def check(self) -> None:
        """Raise TransferAbortedError when this pull was cancelled, too slow or too long."""
        if self.guard is not None:
            self.guard.check()

    def _send(self, method: str, url: str, headers: dict[str, str],
              body: Callable[[], Readable | bytes] | bytes | None) -> requests.Response:
        resp, where = self._follow(method, url, headers, body)
        if resp.status_code == 401 and self._authenticate(resp, where):
            resp.close()
            resp, _ = self._follow(method, url, headers, body)
        return resp

    def _follow(self, method: str, url: str, headers: dict[str, str],
                body: Callable[[], Readable | bytes] | bytes | None) -> tuple[requests.Response, str]:
        """The first answer that is not a redirect, and the URL that gave it."""
        for _ in range(MAX_REDIRECTS):
            sent = dict(headers)
            if self._auth_header and urlsplit(url).netloc == self.host:  # never to another host
                sent["Authorization"] = self._auth_header
            data = body() if callable(body) else body
            # Always streamed: no body (an error page included) is read without a size cap.
            resp = self.session.request(method, url, headers=sent, data=data, stream=True,
                                        allow_redirects=False)
            if self.guard is not None:
                self.guard.opened(resp)
            location = resp.headers.get("Location")
            if resp.status_code not in REDIRECTS or not location:
                return resp, url
            resp.close()
            target = urljoin(url, location)
            parts = urlsplit(target)
            if parts.scheme not in ("http", "https"):
                raise RegistryError(f"registry {self.host} redirected to an unsupported URL scheme")
            if parts.scheme == "http" and not is_insecure(parts.netloc) and not self.insecure:
                raise RegistryError(f"registry {self.host} redirected to plain HTTP; refused")
            if resp.status_code == 303:
                method, body = "GET", None
            url = target
        raise RegistryError(f"registry {self.host}: too many redirects")

    # -- auth -----------------------------------------------------------------------------------
    def _authenticate(self, resp: requests.Response, where: str) -> bool:
        """Answer a 401 challenge from `where`; False when there is nothing new to try."""
        other = urlsplit(where).netloc
        if other != self.host:
            # A redirect led elsewhere (a CDN, or a hostile host): answering its challenge would
            # send this registry's credentials there, or its token back here (CVE-2025-51471).
            resp.close()
            raise RegistryAuthError(
                f"{_shown(other)}, where registry {self.host} redirected, asks for a login; "
                f"mr sends the credentials of {self.host} to no other host"
            )
        challenge = resp.headers.get("WWW-Authenticate", "")
        scheme = challenge.split(" ", 1)[0].lower()
        if scheme == "basic":
            header = self._basic_header(where)
        elif scheme == "bearer":
            header = self._bearer_header(challenge)
        else:
            return False
        if header == self._auth_header:
            return False
        self._auth_header = header
        return True

    def _basic_header(self, where: str) -> str:
        if not self._basic:
            raise RegistryAuthError(f"registry {self.host} requires a login (docker login)")
        if not may_carry_credentials(where):
            raise RegistryAuthError(
                f"registry {self.host} asks for the password over plain HTTP; refused "
                "(list it in MR_INSECURE_REGISTRIES to allow that)"
            )
        return f"Basic {self._basic}"

    def _bearer_header(self, challenge: str) -> str:
        h = parse_auth_header(challenge)
        realm = urlsplit(h.realm or "")
        if realm.scheme not in ("http", "https") or not realm.netloc:
            raise RegistryAuthError(f"registry {self.host} sent an unusable auth challenge")
        if realm.scheme == "http" and not (self.insecure or is_insecure(realm.netloc)):
            raise RegistryAuthError(f"registry {self.host} wants credentials over plain HTTP")
        try:
            token = self._request_token(h)
        except NETWORK_ERRORS as exc:
            raise RegistryError(f"cannot reach the token service of {self.host}") from exc
        except ValueError as exc:
            raise RegistryAuthError(f"registry {self.host}: bad token response") from exc
        if not token:
            raise RegistryAuthError(f"registry {self.host} refused the credentials")
        return f"Bearer {token}"

    def _request_token(self, h: authHeader) -> str | None:
        """A bearer token from the challenge's realm; the reply is read with a size cap.
        The credentials go along only over HTTPS (or to loopback): the realm may be on another
        host (Docker Hub's is auth.docker.io), but never read in clear text on the way."""
        realm = h.realm or ""
        params = {k: v for k, v in (("service", h.service), ("scope", h.scope)) if v}
        headers = {"Accept": "application/json"}
        if self._basic:
            if not may_carry_credentials(realm):
                raise RegistryAuthError(
                    f"registry {self.host} wants its credentials sent over plain HTTP to "
                    f"{_shown(urlsplit(realm).netloc)}; refused"
                )
            headers["Authorization"] = f"Basic {self._basic}"
        resp = self.session.get(realm, headers=headers, params=params, stream=True)
        with resp:
            if resp.status_code != 200:
                return None
            too_large = RegistryError(f"the registry's token reply is larger than "
                                      f"{MAX_TOKEN_BYTES} bytes")
            info = json.loads(read_capped(resp, MAX_TOKEN_BYTES, too_large))
        token = info.get("token") or info.get("access_token") if isinstance(info, dict) else None
        return token if isinstance(token, str) else None

    # -- API ----------------------------------------------------------------------------------
    def _raise(self, reply: Reply, what: str) -> None:
        if reply.status_code in (401, 403):
            raise RegistryAuthError(
                f"access to {what} denied by {self.host} (it may not exist, or needs a login)"
            )
        raise RegistryError(f"registry {self.host}: {what}: {_registry_message(reply)}")

    def get_manifest(self, ref: Reference) -> tuple[bytes, str, str]:
        """(raw bytes, content type, digest) of a manifest; digest checked against any pin."""
        reply = self.request(
            "GET", self.url(ref.repository, "manifests", ref.remote_ref),
            headers={"Accept": ACCEPT}, limit=MAX_MANIFEST_BYTES,
            too_large=InvalidManifestError("invalid model manifest: larger than 4 MiB"))
        if reply.status_code == 404:
            raise RemoteModelNotFoundError(f"model not found: {ref.display}")
        if reply.status_code != 200:
            self._raise(reply, ref.display)
        got = digests.of_bytes(reply.body)
        for want in (ref.digest, reply.headers.get("Docker-Content-Digest")):
            if want and digests.is_valid(want) and want != got:
                raise DigestMismatchError(f"digest mismatch: want {want} got {got}")
        return reply.body, reply.headers.get("Content-Type", ""), got

    def open_blob(self, repository: str, digest: str, offset: int = 0) -> requests.Response:
        """A streaming GET of a blob, from `offset` with a Range request. 200, 206 or 416."""
        headers = {"Accept-Encoding": "identity"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        resp = self.stream(self.url(repository, "blobs", digests.validate(digest)), headers)
        if resp.status_code in (200, 206, 416):
            return resp
        reply = _read(resp)
        if reply.status_code == 404:
            raise RegistryError(f"registry {self.host}: blob {digest} not found")
        self._raise(reply, f"blob {digest}")
        raise AssertionError("unreachable")  # pragma: no cover

    def blob_exists(self, repository: str, digest: str) -> bool:
        reply = self.request("HEAD", self.url(repository, "blobs", digests.validate(digest)))
        if reply.status_code in (200, 404):
            return reply.status_code == 200
        self._raise(reply, f"blob {digest}")
        return False

    def upload_blob(self, repository: str, digest: str, size: int,
                    body: Callable[[], Readable | bytes]) -> None:
        """Monolithic upload: POST a session, PUT the bytes with `?digest=`. Retried whole."""
        digests.validate(digest)

        def attempt() -> Reply:
            post = self.request("POST", self.uploads_url(repository),
                                headers={"Content-Length": "0"})
            if post.status_code != 202 or not post.headers.get("Location"):
                self._raise(post, f"upload of {digest}")
            location = urljoin(self.uploads_url(repository), post.headers["Location"])
            sep = "&" if "?" in location else "?"
            return _read(self._send("PUT", f"{location}{sep}digest={digest}",
                                    {"Content-Type": "application/octet-stream",
                                     "Content-Length": str(size)}, body))

        put = self._retrying(attempt, f"upload to {self.host} failed")
        if put.status_code not in (201, 204):
            self._raise(put, f"upload of {digest}")

    def put_manifest(self, ref: Reference, data: bytes, media_type: str) -> str:
        reply = self.request("PUT", self.url(ref.repository, "manifests", ref.remote_ref),
                             headers={"Content-Type": media_type}, body=data)
        if reply.status_code not in (200, 201):
            self._raise(reply, f"manifest {ref.display}")
        want = digests.of_bytes(data)
        got = reply.headers.get("Docker-Content-Digest")
        if got and got != want:
            raise DigestMismatchError(f"digest mismatch: want {want} got {got[:80]}")
        return want
