"""How the CLI reaches a server over HTTPS: MR_HOST may be an https:// URL, trusted through the
system's CAs or the CA file of `--ca-cert` / MR_CA_CERT. A certificate that does not verify is
one clear error (TLSError), never a silent fall-back to running in-process."""

from __future__ import annotations

import ssl
from pathlib import Path

from mr import config
from mr.errors import MrError

ENV = "MR_CA_CERT"
_given: str | None = None  # `mr --ca-cert FILE`, over MR_CA_CERT


class TLSError(MrError):
    """The server's TLS certificate could not be verified (or the CA file is unusable)."""

    exit_code = 14
    http_status = 502


def use_ca_cert(path: str) -> None:
    global _given
    _given = path


def ca_cert() -> str | None:
    return _given or config.raw(ENV)


def ssl_context() -> ssl.SSLContext:
    """The system's trust store, or only the CA file of MR_CA_CERT when set."""
    path = ca_cert()
    if path is None:
        return ssl.create_default_context()
    if not Path(path).is_file():
        raise TLSError(f"the CA certificate file {path} does not exist ({ENV} / --ca-cert)")
    try:
        return ssl.create_default_context(cafile=path)
    except ssl.SSLError as exc:
        raise TLSError(f"the CA certificate file {path} is not a PEM certificate: {exc.reason}") from None


def is_cert_failure(exc: BaseException) -> bool:
    """Whether `exc` (or what caused it) is a failed certificate check."""
    seen: object = exc
    for _ in range(8):  # a chain of causes (urllib wraps the ssl error in .reason)
        if not isinstance(seen, BaseException):
            return False
        if isinstance(seen, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(seen):
            return True
        seen = getattr(seen, "reason", None) or seen.__cause__ or seen.__context__
    return False


def cert_error(url: str, exc: BaseException) -> TLSError:
    detail = getattr(exc, "reason", exc)
    where = f"the CA in {ca_cert()}" if ca_cert() else "the system's CAs"
    return TLSError(f"TLS: the certificate of {url} is not trusted by {where} ({detail}); "
                    f"give the server's CA with --ca-cert or {ENV}")
