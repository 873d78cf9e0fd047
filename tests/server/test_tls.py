"""`mr serve --tls-cert/--tls-key` (HTTPS) and the CLI trusting it through --ca-cert / MR_CA_CERT,
with certificates made here: a CA, a server certificate it signs, and an unrelated CA."""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from support.serving import TINY, free_port, start, wait_for

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePrivateKey as Key


def trust(ca: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca))


def _key() -> Key:
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key: Key, path: Path) -> Path:
    from cryptography.hazmat.primitives import serialization

    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    return path


def _cert(subject: str, key: Key, issuer: str, issuer_key: Key, ca: bool, path: Path) -> Path:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
               .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ca:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
            key_encipherment=False, data_encipherment=False, key_agreement=False, encipher_only=False,
            decipher_only=False), critical=True)
        builder = builder.add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    else:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False)
    path.write_bytes(builder.sign(issuer_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))
    return path


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("tls")
    ca_key, other_key, server_key = _key(), _key(), _key()
    return {
        "ca": _cert("mr test CA", ca_key, "mr test CA", ca_key, True, d / "ca.pem"),
        "other_ca": _cert("someone else", other_key, "someone else", other_key, True, d / "other.pem"),
        "cert": _cert("127.0.0.1", server_key, "mr test CA", ca_key, False, d / "server.pem"),
        "key": _pem_key(server_key, d / "server.key"),
        "other_key": _pem_key(other_key, d / "other.key"),
    }


@pytest.fixture(scope="module")
def https_server(certs: dict[str, Path], store_root: Path,
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    env = {"MR_MODELS_DIR": str(store_root), "MR_HOME": str(tmp_path_factory.mktemp("tls-home")),
           "MR_PORT": str(port), "MR_CTX_SIZE": "512"}
    proc = start(["--tls-cert", str(certs["cert"]), "--tls-key", str(certs["key"])], env)
    url = f"https://127.0.0.1:{port}"

    def healthy() -> bool:
        assert proc.poll() is None, proc.communicate()[1]
        try:
            return httpx.get(url + "/health", verify=trust(certs["ca"]), timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        assert wait_for(healthy, 60), "mr serve --tls-cert did not come up"
        yield url
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


def mr(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k not in ("MR_CA_CERT", "MR_DEBUG")}
    return subprocess.run([sys.executable, "-m", "mr", *args], env={**environ, **env},
                          capture_output=True, text=True, timeout=60)


def test_the_server_speaks_https(https_server: str, certs: dict[str, Path]) -> None:
    with httpx.Client(base_url=https_server, verify=trust(certs["ca"]), timeout=60) as client:
        r = client.post("/v1/chat/completions", json={"model": TINY, "max_tokens": 2,
                                                      "messages": [{"role": "user", "content": "hi"}]})
        assert r.status_code == 200, r.text
    with pytest.raises(httpx.HTTPError):
        httpx.get(https_server.replace("https://", "http://") + "/health", timeout=5)


def test_cli_trusts_the_ca_it_is_given(https_server: str, certs: dict[str, Path]) -> None:
    by_env = mr("status", MR_HOST=https_server, MR_CA_CERT=str(certs["ca"]))
    assert by_env.returncode == 0, by_env.stderr
    assert f"running at {https_server}" in by_env.stdout
    by_flag = mr("--ca-cert", str(certs["ca"]), "ps", "--json", MR_HOST=https_server)
    assert by_flag.returncode == 0, by_flag.stderr
    assert isinstance(json.loads(by_flag.stdout), list)


@pytest.mark.parametrize("ca", ["other_ca", None])
def test_a_wrong_ca_fails_cleanly(https_server: str, certs: dict[str, Path], ca: str | None) -> None:
    env = {"MR_HOST": https_server, **({"MR_CA_CERT": str(certs[ca])} if ca else {})}
    for verb in (["status"], ["ps"], ["run", TINY, "hi"]):
        result = mr(*verb, **env)
        assert result.returncode == 14, (verb, result.stdout, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: TLS:"), result.stderr
        assert "--ca-cert" in lines[0]


def test_unusable_tls_files_are_one_line(certs: dict[str, Path], tmp_path: Path) -> None:
    mismatched = mr("serve", "--tls-cert", str(certs["cert"]), "--tls-key", str(certs["other_key"]),
                    MR_HOME=str(tmp_path), MR_PORT=str(free_port()))
    assert mismatched.returncode == 2 and "cannot serve TLS" in mismatched.stderr
    assert "Traceback" not in mismatched.stderr
    alone = mr("serve", "--tls-cert", str(certs["cert"]), MR_HOME=str(tmp_path))
    assert alone.returncode == 2 and "go together" in alone.stderr
    missing = mr("status", MR_HOST="https://127.0.0.1:1", MR_CA_CERT=str(tmp_path / "nope.pem"))
    assert missing.returncode == 14 and "does not exist" in missing.stderr


def _metric(text: str, name: str) -> float:
    values = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name)]
    return sum(values)


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_a_stream_over_tls_is_written_by_the_event_loop_never_the_engine(
        loop: str, certs: dict[str, Path], store_root: Path, tmp_path: Path) -> None:
    # The engine thread writes a plain stream's frames to a plain TCP socket itself; bytes it
    # wrote to a TLS socket's descriptor would bypass the encryption and break the stream. The
    # deterministic mode makes the streamed and whole answers comparable on every CPU.
    port = free_port()
    env = {"MR_MODELS_DIR": str(store_root), "MR_HOME": str(tmp_path), "MR_PORT": str(port),
           "MR_CTX_SIZE": "2048", "MR_DETERMINISTIC": "1"}
    proc = start(["--tls-cert", str(certs["cert"]), "--tls-key", str(certs["key"])], env, loop=loop)
    url = f"https://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=url, verify=trust(certs["ca"]), timeout=60) as client:
            assert wait_for(lambda: _healthy(client, proc), 60), "mr serve --tls-cert did not come up"
            body = {"model": TINY, "max_tokens": 24, "temperature": 0, "ignore_eos": True,
                    "messages": [{"role": "user", "content": "Tell me about the sea."}]}
            whole = client.post("/v1/chat/completions", json=body).json()["choices"][0]["message"]["content"]
            with client.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as r:
                raw = b"".join(r.iter_bytes())
            payloads = [json.loads(line[6:]) for line in raw.decode().splitlines()
                        if line.startswith("data: {")]
            joined = "".join(p["choices"][0]["delta"].get("content") or "" for p in payloads if p["choices"])
            assert raw.rstrip().endswith(b"data: [DONE]") and joined == whole
            metrics = client.get("/metrics").text
            assert _metric(metrics, 'mr_streamed_responses_total{path="direct"}') >= 1  # the fast path
            assert _metric(metrics, "mr_engine_sent_frames_total") == 0  # written by the loop
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


def _healthy(client: httpx.Client, proc: subprocess.Popen[str]) -> bool:
    assert proc.poll() is None, proc.communicate()[1]
    try:
        return client.get("/health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
