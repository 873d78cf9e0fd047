"""A tiny OCI registry in a thread (stdlib http.server) that can misbehave on purpose.

Serves manifests and blobs from memory, optionally behind Basic or Bearer auth, and applies
faults to matching requests: error statuses with Retry-After, corrupt/short/padded/truncated
bodies, ignored Range headers, slow streams, redirects to another server, uploads read slowly.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class Fault:
    """Applied to requests whose path contains `match` (and method, if given), `times` times."""

    match: str
    # status | corrupt | short | pad | truncate | ignore_range | slow | trickle | redirect (GET,
    # HEAD); slow_upload (PUT: the body is read in 64 KiB pieces, `delay` apart)
    kind: str
    times: int = 1
    method: str | None = None
    status: int = 503
    headers: dict[str, str] = field(default_factory=dict)
    cut: int = 1024  # bytes sent before a truncate/short
    delay: float = 0.02  # per chunk for slow
    target: str = ""  # base URL for redirect
    body: bytes = b'{"errors": []}'  # the body of a status fault


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    status: int = 0


class StubRegistry:
    def __init__(self, host: str = "127.0.0.1") -> None:
        # repo -> ref (tag or digest) -> (bytes, content type)
        self.manifests: dict[str, dict[str, tuple[bytes, str]]] = {}
        self.blobs: dict[str, bytes] = {}
        self.faults: list[Fault] = []
        self.seen: list[Seen] = []
        self.auth: str | None = None  # None | "basic" | "bearer"
        self.credentials: tuple[str, str] | None = None  # required user/password, if any
        self.token = "tok-123"
        self.realm: str | None = None  # the Bearer challenge's realm; None: this stub's /token
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer((host, 0), self._handler())
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.bind = host
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                        daemon=True)
        self._thread.start()

    @property
    def host(self) -> str:
        return f"{self.bind}:{self.port}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def add(self, repo: str, tag: str, manifest: bytes, blobs: dict[str, bytes],
            content_type: str = "application/vnd.oci.image.manifest.v1+json") -> str:
        digest = sha256(manifest)
        refs = self.manifests.setdefault(repo, {})
        refs[tag] = refs[digest] = (manifest, content_type)
        self.blobs.update(blobs)
        return digest

    def add_from_store(self, store: Any, reference: str, repo: str, tag: str) -> str:
        model = store.resolve(reference)
        blobs = {d: store.blobs.path(d).read_bytes() for d in model.files}
        return self.add(repo, tag, store.manifest_bytes(model), blobs)

    def requests_for(self, fragment: str, method: str = "GET") -> list[Seen]:
        return [s for s in self.seen if fragment in s.path and s.method == method]

    def _take_fault(self, method: str, path: str,
                    kinds: tuple[str, ...] | None = None) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if kinds is not None and fault.kind not in kinds:
                    continue
                if fault.times > 0 and fault.match in path and fault.method in (None, method):
                    fault.times -= 1
                    return fault
        return None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_HEAD(self) -> None:
                self._serve(head=True)

            def do_GET(self) -> None:
                self._serve(head=False)

            def do_POST(self) -> None:
                self._write()

            def do_PUT(self) -> None:
                self._write()

            def _write(self) -> None:
                """Monolithic uploads and manifest PUTs, enough for push."""
                path = self.path
                stub.seen.append(Seen(self.command, path, dict(self.headers.items())))
                fault = stub._take_fault(self.command, path, kinds=("slow_upload",))
                body = self._read_body(fault.delay if fault else 0.0)
                if len(body) < int(self.headers.get("Content-Length") or 0):
                    self.close_connection = True  # the client gave up mid-body: no answer
                    return
                if not self._authorized():
                    return
                rest = path[len("/v2/"):]
                if self.command == "POST" and rest.endswith("/blobs/uploads/"):
                    repo = rest[: -len("/blobs/uploads/")]
                    self._reply(202, b"", {"Location": f"/v2/{repo}/blobs/uploads/u1?state=x"})
                    return
                if self.command == "PUT" and "/blobs/uploads/" in rest:
                    want = rest.split("digest=", 1)[1]
                    if sha256(body) != want:
                        self._reply(400, b'{"errors": [{"code": "DIGEST_INVALID"}]}')
                        return
                    stub.blobs[want] = body
                    self._reply(201, b"", {"Docker-Content-Digest": want})
                    return
                if self.command == "PUT" and "/manifests/" in rest:
                    repo, tag = rest.rsplit("/manifests/", 1)
                    stub.add(repo, tag, body, {}, self.headers.get("Content-Type", ""))
                    self._reply(201, b"", {"Docker-Content-Digest": sha256(body)})
                    return
                self._reply(404)

            def _read_body(self, delay: float) -> bytes:
                length = int(self.headers.get("Content-Length") or 0)
                if not delay:
                    return self.rfile.read(length)
                parts: list[bytes] = []
                while length > 0:
                    try:
                        piece = self.rfile.read(min(length, 64 * 1024))
                    except OSError:
                        break
                    if not piece:
                        break
                    parts.append(piece)
                    length -= len(piece)
                    time.sleep(delay)
                return b"".join(parts)

            def _reply(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None,
                       head: bool = False) -> None:
                seen = stub.seen[-1]
                seen.status = status
                # A HEAD answer never has a body, whichever path answers it (the 401 challenges
                # too): bytes left after it would be read as the next response's status line.
                head = head or self.command == "HEAD"
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                if "Content-Length" not in (headers or {}):
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if not head:
                    try:
                        self.wfile.write(body)
                    except OSError:  # the client hung up (e.g. refused a huge manifest)
                        self.close_connection = True

            def _authorized(self) -> bool:
                got = self.headers.get("Authorization", "")
                if stub.auth is None:
                    return True
                if stub.auth == "basic":
                    user, pw = stub.credentials or ("", "")
                    want = "Basic " + base64.b64encode(f"{user}:{pw}".encode()).decode()
                    if got == want:
                        return True
                    self._reply(401, b"{}", {"WWW-Authenticate": 'Basic realm="stub"'},
                                head=self.command == "HEAD")  # no body after a HEAD
                    return False
                action = "push" if self.command in ("POST", "PUT", "PATCH") else "pull"
                if got.startswith(f"Bearer {stub.token}:") and action in got.split(":", 1)[1]:
                    return True
                path = self.path.split("/v2/", 1)[-1]
                repo = path.split("/blobs/")[0].split("/manifests/")[0]
                scope = "pull" if action == "pull" else "pull,push"
                realm = stub.realm or f"http://{stub.host}/token"
                challenge = (f'Bearer realm="{realm}",service="stub",'
                             f'scope="repository:{repo}:{scope}"')
                self._reply(401, b"{}", {"WWW-Authenticate": challenge}, head=self.command == "HEAD")
                return False

            def _token(self) -> None:
                if stub.credentials is not None:
                    user, pw = stub.credentials
                    want = "Basic " + base64.b64encode(f"{user}:{pw}".encode()).decode()
                    if self.headers.get("Authorization") != want:
                        self._reply(401, b'{"details": "bad credentials"}')
                        return
                from urllib.parse import parse_qs, urlsplit

                scope = parse_qs(urlsplit(self.path).query).get("scope", [""])[0]
                token = f"{stub.token}:{scope.rsplit(':', 1)[-1]}"
                self._reply(200, json.dumps({"token": token}).encode(),
                            {"Content-Type": "application/json"})

            def _serve(self, head: bool) -> None:
                path = self.path
                stub.seen.append(Seen(self.command, path, dict(self.headers.items())))
                if path.startswith("/token"):
                    self._token()
                    return
                fault = stub._take_fault(self.command, path)
                if fault and fault.kind == "status":
                    self._reply(fault.status, fault.body, fault.headers, head)
                    return
                if fault and fault.kind == "redirect":
                    self._reply(307, b"", {"Location": fault.target + path}, head)
                    return
                if not path.startswith("/v2/"):
                    self._reply(404, head=head)
                    return
                if path == "/v2/":
                    if self._authorized():
                        self._reply(200, b"{}", head=head)
                    return
                if not self._authorized():
                    return
                rest = path[len("/v2/"):]
                if "/manifests/" in rest:
                    repo, ref = rest.rsplit("/manifests/", 1)
                    found = stub.manifests.get(repo, {}).get(ref)
                    if found is None:
                        self._reply(404, b'{"errors": [{"code": "MANIFEST_UNKNOWN"}]}', head=head)
                        return
                    data, ctype = found
                    self._reply(200, data, {"Content-Type": ctype,
                                            "Docker-Content-Digest": sha256(data)}, head)
                    return
                if "/blobs/" in rest:
                    digest = rest.rsplit("/blobs/", 1)[1]
                    data = stub.blobs.get(digest)
                    if data is None:
                        self._reply(404, b'{"errors": [{"code": "BLOB_UNKNOWN"}]}', head=head)
                        return
                    self._blob(data, fault, head)
                    return
                self._reply(404, head=head)

            def _blob(self, data: bytes, fault: Fault | None, head: bool) -> None:
                kind = fault.kind if fault else ""
                if kind == "corrupt":
                    mid = len(data) // 2
                    data = data[:mid] + bytes([data[mid] ^ 0xFF]) + data[mid + 1:]
                elif kind == "pad":
                    data = data + b"\0" * 64
                start = 0
                rng = self.headers.get("Range")
                status, headers = 200, {"Content-Type": "application/octet-stream"}
                if rng and kind != "ignore_range" and rng.startswith("bytes="):
                    start = int(rng[6:].split("-")[0])
                    if start >= len(data):
                        self._reply(416, b"", {"Content-Range": f"bytes */{len(data)}"}, head)
                        return
                    status = 206
                    headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
                body = data[start:]
                if kind == "short":
                    body = body[: fault.cut]
                if kind == "truncate":
                    headers["Content-Length"] = str(len(body))
                    self._reply(status, body[: fault.cut], headers, head)
                    self.wfile.flush()
                    self.close_connection = True
                    return
                if kind == "trickle":  # one byte at a time, `delay` apart: a read timeout never fires
                    headers["Content-Length"] = str(len(body))
                    self._reply(status, b"", headers, head=True)
                    for i in range(len(body)):
                        try:
                            self.wfile.write(body[i:i + 1])
                            self.wfile.flush()
                        except OSError:
                            return
                        time.sleep(fault.delay)
                    return
                if kind == "slow":
                    headers["Content-Length"] = str(len(body))
                    self._reply(status, b"", headers, head=True)
                    for i in range(0, len(body), 16 * 1024):
                        try:
                            self.wfile.write(body[i:i + 16 * 1024])
                            self.wfile.flush()
                        except OSError:
                            return
                        time.sleep(fault.delay)
                    return
                self._reply(status, body, headers, head)

        return Handler
