"""mr.media URLs: data URLs and base64 refused by their encoded size before decoding, remote URLs
refused unless the server allows them, and then fetched from a real HTTP server on loopback with
a streamed size cap, a total time cap and at most three http(s) redirects."""

from __future__ import annotations

import asyncio
import base64
import io
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from PIL import Image as PILImage

from mr.errors import InvalidArgumentError
from mr.media import Image, MediaLimits, MediaSource, decode_base64, fetch, load, parse_data_url

FIELD = "input[0].content[2]"
LIMITS = MediaLimits()
REMOTE = MediaLimits(remote=True, max_bytes=64 * 1024, remote_timeout_s=1.0)


def png() -> bytes:
    out = io.BytesIO()
    PILImage.new("RGB", (8, 8), (255, 0, 0)).save(out, "PNG")
    return out.getvalue()


def refused(call: object, *args: object) -> InvalidArgumentError:
    assert callable(call)
    with pytest.raises(InvalidArgumentError) as caught:
        call(*args)
    error = caught.value
    assert error.param == FIELD and str(error).startswith(f"{FIELD}: "), str(error)
    return error


# Data URLs and base64


def test_a_data_url_gives_its_type_and_bytes() -> None:
    data = png()
    encoded = base64.b64encode(data).decode()
    assert parse_data_url(f"data:image/png;base64,{encoded}", FIELD) == ("image/png", data)
    assert parse_data_url(f"DATA:Image/PNG;name=x.png;base64,{encoded}", FIELD) == ("image/png", data)
    assert parse_data_url(f"data:;base64,{encoded}", FIELD) == ("", data)


def test_whitespace_in_the_base64_is_tolerated() -> None:
    data = png()
    wrapped = "\n".join(base64.encodebytes(data).decode().split())  # MIME's 76-column lines
    assert parse_data_url(f"data:image/png;base64,{wrapped}", FIELD)[1] == data
    assert decode_base64(" " + wrapped + "\n", FIELD) == data


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("https://example.com/a.png", "is not a data URL"),
        ("data:image/png;base64", "has no ','"),
        ("data:image/png,%89PNG", "is not base64"),
        ("data:image/png;charset=x,abcd", "is not base64"),
        ("data:image png;base64,AAAA", "media type 'image png' is malformed"),
        ("data:image/png;base64,AAA*", "base64 data is malformed"),
        ("data:image/png;base64,AAAAA", "base64 data is malformed"),  # bad padding
        ("data:image/png;base64,AA==AA==", "base64 data is malformed"),
        ("data:image/png;base64,AAé=", "base64 data is malformed"),
    ],
)
def test_malformed_data_urls_are_refused(url: str, says: str) -> None:
    assert says in str(refused(parse_data_url, url, FIELD))


def test_oversized_data_is_refused_from_its_encoded_length_before_decoding() -> None:
    small = MediaLimits(max_bytes=30)  # 40 base64 characters at most
    assert len(decode_base64(base64.b64encode(bytes(30)).decode(), FIELD, small)) == 30
    error = refused(decode_base64, base64.b64encode(bytes(31)).decode(), FIELD, small)
    assert str(error) == (f"{FIELD}: the base64 data is 44 characters, more than the 40 that encode "
                          "the 30 bytes allowed")
    # not base64 at all, yet refused for its size: the length was checked before any decoding
    huge = "!" * 10_000_000
    start = time.perf_counter()
    assert "more than the 40" in str(refused(parse_data_url, f"data:image/png;base64,{huge}", FIELD, small))
    assert time.perf_counter() - start < 0.5


def test_a_bound_not_a_multiple_of_three_still_holds_exactly() -> None:
    limits = MediaLimits(max_bytes=31)  # 44 characters could carry 33 bytes
    assert "33 bytes, more than the 31 bytes allowed" in str(
        refused(decode_base64, base64.b64encode(bytes(33)).decode(), FIELD, limits))


def test_load_refuses_a_data_url_over_the_requests_bound() -> None:
    url = "data:image/png;base64," + base64.b64encode(png()).decode()
    source = MediaSource(kind="image", field=FIELD, url=url)
    assert isinstance(load(source, LIMITS), Image)
    assert "more than the" in str(refused(load, source, MediaLimits(max_bytes=20)))


# Remote URLs, refused


def test_remote_urls_are_refused_unless_the_server_allows_them() -> None:
    error = refused(fetch, "https://example.com/cat.png", FIELD, LIMITS)
    assert "mr serve --allow-remote-media" in str(error)
    source = MediaSource(kind="image", field=FIELD, url="https://example.com/cat.png")
    assert "mr serve --allow-remote-media" in str(refused(load, source, LIMITS))


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://example.com/a.png", "gopher://x/", "http://"])
def test_only_http_and_https_are_fetched(url: str) -> None:
    assert "is not an http or https URL" in str(refused(fetch, url, FIELD, REMOTE))


# Remote URLs, fetched from a real server on loopback


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"  # a body without Content-Length ends when the connection does

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        route = {
            "/cat.png": lambda: self.body(png(), "image/png"),
            "/big": lambda: self.body(bytes(REMOTE.max_bytes + 1), "image/png"),
            "/big-undeclared": self.endless,
            "/gzip": lambda: self.body(png(), "image/png", {"Content-Encoding": "gzip"}),
            "/to-file": lambda: self.redirect("file:///etc/passwd"),
            "/to-ftp": lambda: self.redirect("ftp://127.0.0.1/cat.png"),
            "/missing": lambda: self.send_error(404),
            "/slow": self.slow,
            "/stall": self.stall,
        }.get(self.path)
        if route is not None:
            route()
        elif self.path.startswith("/hops/"):  # /hops/N redirects N more times, then the picture
            left = int(self.path.rsplit("/", 1)[1])
            self.redirect(f"/hops/{left - 1}" if left > 0 else "/cat.png")
        else:
            self.send_error(404)

    def body(self, data: bytes, kind: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def redirect(self, location: str) -> None:
        self.send_response(302)
        self.send_header("Location", location)
        self.end_headers()

    def endless(self) -> None:
        self.send_response(200)
        self.end_headers()
        self.write_for(10.0, bytes(16 * 1024), pause=0.0)

    def slow(self) -> None:  # a byte every 0.1 s: every read is quick, the whole never ends
        self.send_response(200)
        self.send_header("Content-Length", "1000")
        self.end_headers()
        self.write_for(10.0, b"x", pause=0.1)

    def stall(self) -> None:  # headers, then silence
        self.send_response(200)
        self.send_header("Content-Length", "1000")
        self.end_headers()
        self.wfile.flush()
        time.sleep(5)

    def write_for(self, seconds: float, chunk: bytes, pause: float) -> None:
        deadline = time.monotonic() + seconds
        try:
            while time.monotonic() < deadline:
                self.wfile.write(chunk)
                self.wfile.flush()
                time.sleep(pause)
        except OSError:  # the client hung up, as it should
            pass


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_a_remote_image_is_fetched_and_decoded(server: str) -> None:
    assert fetch(f"{server}/cat.png", FIELD, REMOTE) == png()
    image = load(MediaSource(kind="image", field=FIELD, url=f"{server}/cat.png"), REMOTE)
    assert isinstance(image, Image) and (image.width, image.height) == (8, 8)


def test_a_declared_size_over_the_bound_is_refused(server: str) -> None:
    error = refused(fetch, f"{server}/big", FIELD, REMOTE)
    assert f"is {REMOTE.max_bytes + 1} bytes, more than the 65536 bytes allowed" in str(error)


def test_an_undeclared_body_is_cut_off_past_the_bound(server: str) -> None:
    start = time.perf_counter()
    error = refused(fetch, f"{server}/big-undeclared", FIELD, REMOTE)
    assert "is more than the 65536 bytes allowed" in str(error)
    assert time.perf_counter() - start < 1.0  # stopped reading; did not wait for the end


def test_an_encoded_body_is_refused(server: str) -> None:
    assert "gzip-encoded" in str(refused(fetch, f"{server}/gzip", FIELD, REMOTE))


def test_redirects_are_followed_up_to_three(server: str) -> None:
    assert fetch(f"{server}/hops/2", FIELD, REMOTE) == png()  # 3 redirects in all
    error = refused(fetch, f"{server}/hops/3", FIELD, REMOTE)
    assert "redirects more than the 3 times allowed" in str(error)


@pytest.mark.parametrize(("path", "scheme"), [("/to-file", "file"), ("/to-ftp", "ftp")])
def test_a_redirect_off_http_is_refused(server: str, path: str, scheme: str) -> None:
    error = refused(fetch, f"{server}{path}", FIELD, REMOTE)
    assert f"the redirect to '{scheme}://" in str(error) and "is not an http or https URL" in str(error)


def test_an_error_status_is_refused(server: str) -> None:
    assert "the server answered 404" in str(refused(fetch, f"{server}/missing", FIELD, REMOTE))


@pytest.mark.parametrize("path", ["/slow", "/stall"])
def test_a_slow_server_hits_the_total_time_cap(server: str, path: str) -> None:
    start = time.perf_counter()
    error = refused(fetch, f"{server}{path}", FIELD, REMOTE)
    elapsed = time.perf_counter() - start
    assert "took more than the 1 seconds allowed" in str(error)
    assert 0.9 < elapsed < 2.5  # the cap is on the whole fetch, not on each read (/slow: 100 s)


def test_an_unreachable_server_is_a_400() -> None:
    with socket.socket() as probe:  # a loopback port that nothing listens on once it is closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    error = refused(fetch, f"http://127.0.0.1:{port}/cat.png", FIELD, REMOTE)
    assert "failed (ConnectError" in str(error)


def test_a_fetch_runs_in_a_worker_thread_beside_a_running_event_loop(server: str) -> None:
    # how the server calls it: load in a worker thread while its own event loop keeps running
    source = MediaSource(kind="image", field=FIELD, url=f"{server}/cat.png")

    async def serve() -> object:
        return await asyncio.to_thread(load, source, REMOTE)

    assert isinstance(asyncio.run(serve()), Image)
