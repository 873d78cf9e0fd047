"""The registry client: oras' session and token auth, plus mr's retries, redirects and limits.

oras provides the HTTP session (cookies refused), the bearer-token request (Docker Hub's token
flow and any registry's) and the challenge parser; mr adds capped exponential backoff honouring
Retry-After on network errors, 429 and 5xx, manual redirects that never carry credentials to
another host or downgrade to plain HTTP, timeouts so a stalled transfer fails, and size caps.
Credentials go to their registry only: never to a host a redirect led to (its 401 is an error,
not a challenge to answer), and to a token realm only over HTTPS or on loopback.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urljoin, urlsplit

import oras.provider
import requests
from oras.auth.utils import parse_auth_header
from requests.adapters import HTTPAdapter

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


def _env_float(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default


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
        return min(self.cap_s, self.base_s * (2**attempt)) * (0.5 + random.random() / 2)


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


class _TimeoutAdapter(HTTPAdapter):
    """Every request through the session gets a (connect, read) timeout, oras' included."""

    def __init__(self, timeout: tuple[float, float]) -> None:
        super().__init__(pool_maxsize=8)
        self._timeout = timeout

    def send(self, request: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self._timeout
        return super().send(request, **kwargs)


MAX_ERROR_BYTES = 64 * 1024  # a registry's error body: only its first messages are shown
MAX_TOKEN_BYTES = 1 << 20


def read_capped(resp: requests.Response, limit: int, what: str) -> bytes:
    """At most `limit` bytes of a streamed body; longer bodies are an error, never buffered."""
    chunks, total = [], 0
    for chunk in resp.iter_content(16 * 1024):
        total += len(chunk)
        if total > limit:
            raise RegistryError(f"the registry's {what} is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _buffer_capped(resp: requests.Response) -> None:
    """Read a small reply (HEAD, upload, manifest PUT) into `resp.content`, at most
    MAX_ERROR_BYTES of it: requests itself would buffer any size."""
    body = bytearray()
    with resp:
        for chunk in resp.iter_content(16 * 1024):
            body += chunk
            if len(body) >= MAX_ERROR_BYTES:
                break
    resp._content = bytes(body[:MAX_ERROR_BYTES])
    resp._content_consumed = True


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


def _shown(text: str) -> str:
    """A host from a registry's reply, safe to print: printable and short."""
    return "".join(ch for ch in text if ch.isprintable())[:100]


def _registry_message(resp: requests.Response) -> str:
    try:
        consumed = getattr(resp, "_content_consumed", False)
        body = resp.content if consumed else read_capped(resp, MAX_ERROR_BYTES, "error body")
        errors = json.loads(body).get("errors") or []
        text = "; ".join(
            str(e.get("message") or e.get("code")) for e in errors if isinstance(e, dict)
        )
    except (ValueError, AttributeError, RegistryError, *NETWORK_ERRORS):
        text = ""
    text = "".join(ch for ch in text if ch.isprintable())[:200]
    return f"HTTP {resp.status_code}" + (f": {text}" if text else "")


def hf_token_header(registry: str, host: str, scheme: str) -> str | None:
    """`Bearer $HF_TOKEN` for Hugging Face itself (hf.co, or HF_ENDPOINT's host): never for a
    mirror of it (another host) nor any other registry, and never over plain HTTP off loopback."""
    token = os.environ.get("HF_TOKEN", "").strip()
    if not token or registry != HUGGING_FACE or host != wire_host(HUGGING_FACE):
        return None
    if not may_carry_credentials(f"{scheme}://{host}/"):
        return None
    return f"Bearer {token}"


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
        self._sleep = sleep or (guard.sleep if guard is not None else time.sleep)
        connect = _env_float("MR_REGISTRY_CONNECT_TIMEOUT", 15.0)
        read = _env_float("MR_REGISTRY_READ_TIMEOUT", 60.0)
        self._oras = oras.provider.Registry(hostname=self.host, insecure=self.insecure)
        self.session: requests.Session = self._oras.session
        adapter = _TimeoutAdapter(timeout or (connect, read))
        self.session.mount("https://", adapter)
        self.session.mount("http://", adapter)
        self._basic = (
            basic_auth if basic_auth is not None else credentials.lookup(registry, self.host)
        )
        if self._basic:
            self._oras.auth._basic_auth = self._basic
        self._auth_header: str | None = hf_token_header(registry, self.host, self.scheme)

    # -- URLs ---------------------------------------------------------------------------------
    def url(self, repository: str, kind: str, ref: str) -> str:
        return f"{self.scheme}://{self.host}/v2/{repository}/{kind}/{ref}"

    def uploads_url(self, repository: str) -> str:
        return f"{self.scheme}://{self.host}/v2/{repository}/blobs/uploads/"

    # -- transport ------------------------------------------------------------------------------
    def request(
        self,
        method: str,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        body: Callable[[], Any] | bytes | None = None,
        stream: bool = False,
    ) -> requests.Response:
        """Send with auth, redirects and retries (network errors, 429, 5xx)."""
        for attempt in range(self.retry.attempts):
            last = attempt == self.retry.attempts - 1
            self.check()
            try:
                resp = self._send(method, url, dict(headers or {}), body, stream)
            except NETWORK_ERRORS as exc:
                self.check()  # a guard that tripped explains the error: no retry
                if last:
                    raise RegistryError(
                        f"cannot reach registry {self.host}: {_reason(exc)}"
                    ) from exc
                self._sleep(self.retry.delay(attempt))
                continue
            if resp.status_code in RETRY_STATUSES and not last:
                wait = retry_after_seconds(resp.headers.get("Retry-After"))
                resp.close()
                self._sleep(self.retry.delay(attempt, wait))
                continue
            return resp
        raise AssertionError("unreachable")  # pragma: no cover

    def check(self) -> None:
        """Raise TransferAbortedError when this pull was cancelled, too slow or too long."""
        if self.guard is not None:
            self.guard.check()

    def _send(self, method: str, url: str, headers: dict[str, str], body: Any,
              stream: bool) -> requests.Response:
        resp, where = self._follow(method, url, headers, body, stream)
        if resp.status_code == 401 and self._authenticate(resp, where):
            resp.close()
            resp, _ = self._follow(method, url, headers, body, stream)
        return resp

    def _follow(self, method: str, url: str, headers: dict[str, str], body: Any,
                stream: bool) -> tuple[requests.Response, str]:
        """The first answer that is not a redirect, and the URL that gave it."""
        for _ in range(MAX_REDIRECTS):
            sent = dict(headers)
            if self._auth_header and urlsplit(url).netloc == self.host:  # never to another host
                sent["Authorization"] = self._auth_header
            data = body() if callable(body) else body
            # Always streamed: no body (an error page included) is read without a size cap.
            resp = self.session.request(method, url, headers=sent, data=data, stream=True,
                                        allow_redirects=False, verify=self._oras._tls_verify)
            if self.guard is not None:
                self.guard.opened(resp)
            if not stream:
                _buffer_capped(resp)

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

    def _request_token(self, h: Any) -> str | None:
        """A bearer token from the challenge's realm; the reply is read with a size cap.
        The credentials go along only over HTTPS (or to loopback): the realm may be on another
        host (Docker Hub's is auth.docker.io), but never read in clear text on the way."""
        params = {k: v for k, v in (("service", h.service), ("scope", h.scope)) if v}
        headers = {"Accept": "application/json"}
        if self._basic:
            if not may_carry_credentials(h.realm):
                raise RegistryAuthError(
                    f"registry {self.host} wants its credentials sent over plain HTTP to "
                    f"{_shown(urlsplit(h.realm).netloc)}; refused"
                )
            headers["Authorization"] = f"Basic {self._basic}"
        resp = self.session.get(h.realm, headers=headers, params=params, stream=True,
                                verify=self._oras._tls_verify)
        with resp:
            if resp.status_code != 200:
                return None
            info = json.loads(read_capped(resp, MAX_TOKEN_BYTES, "token reply"))
        token = info.get("token") or info.get("access_token") if isinstance(info, dict) else None
        return token if isinstance(token, str) else None

    # -- API ----------------------------------------------------------------------------------
    def _raise(self, resp: requests.Response, what: str) -> None:
        if resp.status_code in (401, 403):
            raise RegistryAuthError(
                f"access to {what} denied by {self.host} (it may not exist, or needs a login)"
            )
        raise RegistryError(f"registry {self.host}: {what}: {_registry_message(resp)}")

    def get_manifest(self, ref: Reference) -> tuple[bytes, str, str]:
        """(raw bytes, content type, digest) of a manifest; digest checked against any pin."""
        url = self.url(ref.repository, "manifests", ref.remote_ref)
        for attempt in range(self.retry.attempts):
            resp = self.request("GET", url, headers={"Accept": ACCEPT}, stream=True)
            with resp:
                if resp.status_code == 404:
                    raise RemoteModelNotFoundError(f"model not found: {ref.display}")
                if resp.status_code != 200:
                    self._raise(resp, ref.display)
                try:
                    data = _read_limited(resp, MAX_MANIFEST_BYTES)
                except NETWORK_ERRORS as exc:
                    if attempt == self.retry.attempts - 1:
                        raise RegistryError(f"cannot read manifest from {self.host}") from exc
                    self._sleep(self.retry.delay(attempt))
                    continue
                content_type = resp.headers.get("Content-Type", "")
                header_digest = resp.headers.get("Docker-Content-Digest")
            break
        got = digests.of_bytes(data)
        for want in (ref.digest, header_digest):
            if want and digests.is_valid(want) and want != got:
                raise DigestMismatchError(f"digest mismatch: want {want} got {got}")
        return data, content_type, got

    def open_blob(self, repository: str, digest: str, offset: int = 0) -> requests.Response:
        """A streaming GET of a blob, from `offset` with a Range request. 200, 206 or 416."""
        headers = {"Accept-Encoding": "identity"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        resp = self.request("GET", self.url(repository, "blobs", digests.validate(digest)),
                            headers=headers, stream=True)
        if resp.status_code in (200, 206, 416):
            return resp
        resp.close()
        if resp.status_code == 404:
            raise RegistryError(f"registry {self.host}: blob {digest} not found")
        self._raise(resp, f"blob {digest}")
        raise AssertionError("unreachable")  # pragma: no cover

    def blob_exists(self, repository: str, digest: str) -> bool:
        resp = self.request("HEAD", self.url(repository, "blobs", digests.validate(digest)))
        resp.close()
        if resp.status_code == 200:
            return True
        if resp.status_code == 404:
            return False
        self._raise(resp, f"blob {digest}")
        return False

    def upload_blob(self, repository: str, digest: str, size: int,
                    body: Callable[[], Any]) -> None:
        """Monolithic upload: POST a session, PUT the bytes with `?digest=`. Retried whole."""
        digests.validate(digest)
        for attempt in range(self.retry.attempts):
            resp = self.request("POST", self.uploads_url(repository),
                                headers={"Content-Length": "0"})
            resp.close()
            if resp.status_code != 202 or not resp.headers.get("Location"):
                self._raise(resp, f"upload of {digest}")
            location = urljoin(self.uploads_url(repository), resp.headers["Location"])
            sep = "&" if "?" in location else "?"
            try:
                put = self._send("PUT", f"{location}{sep}digest={digest}",
                                 {"Content-Type": "application/octet-stream",
                                  "Content-Length": str(size)}, body, False)
            except NETWORK_ERRORS as exc:
                self.check()  # a guard that tripped (cancel, deadline, rate) explains it: no retry
                if attempt == self.retry.attempts - 1:
                    raise RegistryError(f"upload to {self.host} failed: {_reason(exc)}") from exc
                self._sleep(self.retry.delay(attempt))
                continue
            put.close()
            if put.status_code in (201, 204):
                return
            if put.status_code in RETRY_STATUSES and attempt < self.retry.attempts - 1:
                wait = retry_after_seconds(put.headers.get("Retry-After"))
                self._sleep(self.retry.delay(attempt, wait))
                continue
            self._raise(put, f"upload of {digest}")

    def put_manifest(self, ref: Reference, data: bytes, media_type: str) -> str:
        url = self.url(ref.repository, "manifests", ref.remote_ref)
        resp = self.request("PUT", url, headers={"Content-Type": media_type}, body=data)
        resp.close()
        if resp.status_code not in (200, 201):
            self._raise(resp, f"manifest {ref.display}")
        want = digests.of_bytes(data)
        got = resp.headers.get("Docker-Content-Digest")
        if got and got != want:
            raise DigestMismatchError(f"digest mismatch: want {want} got {got[:80]}")
        return want


def _read_limited(resp: requests.Response, limit: int) -> bytes:
    declared = resp.headers.get("Content-Length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise InvalidManifestError("invalid model manifest: larger than 4 MiB")
    chunks, total = [], 0
    for chunk in resp.iter_content(64 * 1024):
        total += len(chunk)
        if total > limit:
            raise InvalidManifestError("invalid model manifest: larger than 4 MiB")
        chunks.append(chunk)
    return b"".join(chunks)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, requests.Timeout):
        return "timed out"
    if isinstance(exc, requests.exceptions.ChunkedEncodingError):
        return "connection broken"
    return "connection failed"
