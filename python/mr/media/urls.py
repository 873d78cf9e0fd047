"""Media bytes from URLs: `data:` URLs and bare base64 (always), remote http(s) (only when allowed).

Sizes are refused from the encoded length, before any base64 is decoded, and a remote body is
read in a stream that stops one chunk past the bound: no client makes mr hold more than
max_bytes of one item. Remote fetching is off unless `mr serve --allow-remote-media` turns it on
(a local server must not become an open fetcher); on, every fetch has a total time cap (connect
to last byte, redirects included), at most MAX_REDIRECTS redirects, each to http(s) only.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import math
import re

import httpx

from mr.errors import InvalidArgumentError
from mr.media.refusal import refusal, size_text
from mr.media.types import MediaLimits

DEFAULT_LIMITS = MediaLimits()
MAX_REDIRECTS = 3
_MIME = re.compile(r"[A-Za-z0-9!#$&^_.+-]+/[A-Za-z0-9!#$&^_.+-]+")
_SCHEMES = ("http", "https")
# identity: the size cap counts the bytes received, and no gzip bomb is inflated past it.
_HEADERS = {"User-Agent": "mr (media fetch)", "Accept-Encoding": "identity"}


def shown(url: str, limit: int = 80) -> str:
    """A URL as an error message quotes it: never the whole of a long one."""
    return url if len(url) <= limit else url[: limit - 3] + "..."


def encoded_bound(max_bytes: int) -> int:
    """The longest base64 text (no whitespace) that decodes to at most max_bytes bytes."""
    return 4 * math.ceil(max_bytes / 3)


def decode_base64(text: str, field: str, limits: MediaLimits = DEFAULT_LIMITS) -> bytes:
    """Strict standard base64 (whitespace between the characters tolerated), refused when too
    long before a byte of it is decoded. For Ollama's `images` and Anthropic's base64 sources."""
    bound = encoded_bound(limits.max_bytes)
    if len(text) > 2 * bound:  # even half whitespace could not bring it under: no need to look
        raise _too_large(field, len(text), limits)
    compact = "".join(text.split())
    if len(compact) > bound:
        raise _too_large(field, len(compact), limits)
    try:
        data = base64.b64decode(compact.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise refusal(field, f"the base64 data is malformed ({exc})") from exc
    if len(data) > limits.max_bytes:  # a bound that is not a multiple of 3 lets 2 more through
        raise refusal(field, f"the data is {size_text(len(data))}, more than the "
                             f"{size_text(limits.max_bytes)} allowed")
    return data


def parse_data_url(url: str, field: str, limits: MediaLimits = DEFAULT_LIMITS) -> tuple[str, bytes]:
    """(MIME type, bytes) of `data:[<mime>][;param=value]*;base64,<data>`. The MIME type is
    lower case without parameters, "" when the URL names none. A data URL that is not base64 is
    refused: images and audio are binary, and percent-encoding them makes no sense."""
    if url[:5].lower() != "data:":
        raise refusal(field, f"{shown(url)!r} is not a data URL")
    comma = url.find(",")
    if comma < 0:
        raise refusal(field, "the data URL has no ',' before its data")
    params = [p.strip() for p in url[5:comma].split(";")]
    mime = params[0].lower()
    if mime and not _MIME.fullmatch(mime):
        raise refusal(field, f"the data URL's media type {shown(mime, 40)!r} is malformed")
    if len(params) < 2 or params[-1].lower() != "base64":
        raise refusal(field, "the data URL is not base64; media must be sent as "
                             "data:<type>;base64,<data>")
    return mime, decode_base64(url[comma + 1 :], field, limits)


def fetch(url: str, field: str, limits: MediaLimits) -> bytes:
    """The body of a remote http(s) URL, at most limits.max_bytes, within limits.remote_timeout_s
    in all. Blocking: call it from a worker thread (it runs its own event loop, so the total
    time cap cancels the fetch wherever it is, a stalled read included)."""
    if not limits.remote:
        raise refusal(field, f"remote media URLs ({shown(url, 60)!r}) are not fetched by this "
                             "server; `mr serve --allow-remote-media` enables them, or send the "
                             "data inline as a data URL")
    _check_scheme(url, field, "the URL")
    try:
        return asyncio.run(asyncio.wait_for(_fetch(url, field, limits), limits.remote_timeout_s))
    except asyncio.TimeoutError as exc:  # 3.10 spells TimeoutError this way; 3.11 aliases it
        raise refusal(field, f"fetching {shown(url, 60)!r} took more than the "
                             f"{limits.remote_timeout_s:g} seconds allowed") from exc
    except httpx.HTTPError as exc:
        raise refusal(field, f"fetching {shown(url, 60)!r} failed ({type(exc).__name__}: {exc})") from exc


def _check_scheme(url: str, field: str, what: str, sent: str | None = None) -> httpx.URL:
    """The parsed URL if it is http(s) with a host; `sent` is how the client or server spelled
    it, quoted in the refusal (a joined redirect is normalised: file:///x becomes file:/x)."""
    quoted = shown(url if sent is None else sent, 60)
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError, TypeError) as exc:
        raise refusal(field, f"{what} {quoted!r} is malformed ({exc})") from exc
    if parsed.scheme not in _SCHEMES or not parsed.host:
        raise refusal(field, f"{what} {quoted!r} is not an http or https URL; only those are fetched")
    return parsed


async def _fetch(url: str, field: str, limits: MediaLimits) -> bytes:
    # trust_env off: a URL the client chose must never be sent the server user's .netrc
    # credentials, nor go through a proxy meant for the operator's own traffic.
    async with httpx.AsyncClient(follow_redirects=False, trust_env=False, timeout=limits.remote_timeout_s,
                                 headers=_HEADERS) as client:
        target = httpx.URL(url)
        for _ in range(MAX_REDIRECTS + 1):
            async with client.stream("GET", target) as response:
                if not response.is_redirect:
                    return await _body(response, url, field, limits)
                target = _redirect_target(response, field)
    raise refusal(field, f"{shown(url, 60)!r} redirects more than the {MAX_REDIRECTS} times allowed")


def _redirect_target(response: httpx.Response, field: str) -> httpx.URL:
    location = response.headers.get("location")
    if not location:
        raise refusal(field, f"the server answered {response.status_code} with no Location")
    try:
        joined = str(response.url.join(location))
    except (httpx.InvalidURL, ValueError, TypeError) as exc:
        raise refusal(field, f"the redirect to {shown(location, 60)!r} is malformed ({exc})") from exc
    return _check_scheme(joined, field, "the redirect to", sent=location)


async def _body(response: httpx.Response, url: str, field: str, limits: MediaLimits) -> bytes:
    if response.status_code != 200:
        raise refusal(field, f"fetching {shown(url, 60)!r}: the server answered {response.status_code}")
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise refusal(field, f"fetching {shown(url, 60)!r}: the server sent it {encoding}-encoded; "
                             "only unencoded bodies are accepted")
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limits.max_bytes:
        raise refusal(field, f"{shown(url, 60)!r} is {size_text(int(declared))}, more than the "
                             f"{size_text(limits.max_bytes)} allowed")
    chunks: list[bytes] = []
    received = 0
    async for chunk in response.aiter_raw():
        received += len(chunk)
        if received > limits.max_bytes:  # stop reading: the rest is never received
            raise refusal(field, f"{shown(url, 60)!r} is more than the {size_text(limits.max_bytes)} "
                                 "allowed")
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(field: str, encoded: int, limits: MediaLimits) -> InvalidArgumentError:
    return refusal(field, f"the base64 data is {encoded} characters, more than the "
                          f"{encoded_bound(limits.max_bytes)} that encode the "
                          f"{size_text(limits.max_bytes)} allowed")


__all__ = ["MAX_REDIRECTS", "decode_base64", "encoded_bound", "fetch", "parse_data_url"]
