"""Every error the server returns, in OpenAI's envelope: {"error": {message, type, param, code}}.

mr's own errors carry their HTTP status and code; request validation names the offending `param`;
anything unexpected is a 500 without internals (logged here with its traceback). Ollama's routes
(/api/*) answer in Ollama's shape, {"error": "message"}, which its clients parse.
"""

from __future__ import annotations

import logging
import re

import msgspec
from litestar import Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.types import ExceptionHandlersMap

from mr.errors import InvalidArgumentError, MrError
from mr.server.context import Req
from mr.server.disconnect import ClientGone

log = logging.getLogger("mr.server")

RETRY_AFTER_S = "1"
# an absolute path, not the path of a URL (a refused image URL is quoted whole)
_ABS_PATH = re.compile(r"(?<![\w.:/])/(?:[\w.@+-]+/)+([\w.@+-]+)")
_PARAM_HEAD = re.compile(r"^([a-z_][a-z0-9_]*(?:\[\d+\])?(?:\.[a-z_][a-z0-9_]*)*) must ")
_MISSING = re.compile(r"missing required field `([^`]+)`")
_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
          404: "invalid_request_error", 413: "invalid_request_error", 415: "invalid_request_error",
          429: "rate_limit_error"}


class ErrorDetail(msgspec.Struct):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorBody(msgspec.Struct):
    error: ErrorDetail


class OllamaErrorBody(msgspec.Struct):
    error: str


def invalid(param: str, message: str) -> InvalidArgumentError:
    """A 400 naming `param`."""
    err = InvalidArgumentError(message)
    err.param = param
    return err


def scrub(message: str) -> str:
    """No absolute paths in messages sent to clients: keep the file name only."""
    return _ABS_PATH.sub(r"\1", message)


def error_type(status: int) -> str:
    return _TYPES.get(status, "invalid_request_error" if status < 500 else "server_error")


def envelope(status: int, message: str, param: str | None = None, code: str | None = None) -> bytes:
    detail = ErrorDetail(message=scrub(message), type=error_type(status), param=param, code=code)
    return msgspec.json.encode(ErrorBody(error=detail))


def error_response(request: Req | None, status: int, message: str,
                   param: str | None = None, code: str | None = None) -> Response[bytes]:
    headers = {"Retry-After": RETRY_AFTER_S} if status == 503 else None
    if request is not None and request.url.path.startswith("/api/"):
        body = msgspec.json.encode(OllamaErrorBody(error=scrub(message)))
    else:
        body = envelope(status, message, param, code)
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def mr_error_param(exc: MrError) -> str | None:
    param = exc.param
    if param is None and isinstance(exc, InvalidArgumentError):
        match = _PARAM_HEAD.match(str(exc))
        return match.group(1) if match else None
    return param


def handle_mr_error(request: Req, exc: MrError) -> Response[bytes]:
    status = exc.http_status
    if status >= 500 and status not in (503, 507):
        log.error("%s %s failed: %s", request.method, request.url.path, exc)
    code = exc.code if exc.code != "invalid_request_error" else None
    return error_response(request, status, str(exc) or type(exc).__name__, mr_error_param(exc), code)


def handle_validation(request: Req, exc: ValidationException) -> Response[bytes]:
    extra = exc.extra if isinstance(exc.extra, list) else []
    first = extra[0] if extra and isinstance(extra[0], dict) else {}
    message = str(first.get("message") or exc.detail)
    key = first.get("key")
    missing = _MISSING.search(message)
    param = missing.group(1) if missing else (key if key and key != "data" else None)
    if param:
        param = param.replace("[...]", "")  # a dict value: name the field
    text = f"{param}: {message}" if param else message
    return error_response(request, 400, text, param, None)


def handle_http(request: Req, exc: HTTPException) -> Response[bytes]:
    status = exc.status_code
    message = exc.detail or "error"
    if status == 400 and "JSON is malformed" in message:
        message = f"invalid JSON body: {message.split(':', 1)[-1].strip()}"
    response = error_response(request, status, message)
    if exc.headers:
        response.headers.update(exc.headers)
    return response


def handle_client_gone(_request: Req, _exc: ClientGone) -> Response[bytes]:
    """Nobody is listening any more; the work was cancelled. 499 is nginx's "client closed"."""
    return Response(b"", status_code=499)


def handle_unexpected(request: Req, exc: Exception) -> Response[bytes]:
    if isinstance(exc, RecursionError):
        return error_response(request, 400, "the JSON body is nested too deeply")
    log.exception("%s %s: unexpected error", request.method, request.url.path)
    return error_response(request, 500, "internal server error")


EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    ClientGone: handle_client_gone,
    MrError: handle_mr_error,
    ValidationException: handle_validation,
    HTTPException: handle_http,
    Exception: handle_unexpected,
}


def stream_error(exc: BaseException) -> ErrorBody:
    """The `data: {"error": ...}` event that ends a stream which failed after it started."""
    if isinstance(exc, MrError):
        status, code = exc.http_status, exc.code
        message = str(exc)
    else:
        log.error("stream failed", exc_info=exc)
        status, code, message = 500, None, "internal server error"
    detail = ErrorDetail(message=scrub(message), type=error_type(status), param=None, code=code)
    return ErrorBody(error=detail)
