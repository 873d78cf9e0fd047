"""Every error mr raises on purpose, one hierarchy for the engine, the store, the CLI and the server.

The native extension raises these very classes (its binding looks them up here), so callers never
see a bare RuntimeError from C++. Each class carries the CLI exit code and the HTTP status it maps
to, so the CLI and the server translate errors in one place.
"""

from __future__ import annotations


class MrError(Exception):
    """Base of every deliberate mr error."""

    exit_code = 1
    http_status = 500
    code: str | None = None
    param: str | None = None  # the request field at fault (an API error's "param"), when known


class InvalidArgumentError(MrError, ValueError):
    """A parameter or input is out of range or malformed."""

    exit_code = 2
    http_status = 400
    code = "invalid_request_error"


class ModelLoadError(MrError):
    """A model file is missing, not a GGUF, truncated, or refused by llama.cpp."""

    exit_code = 3
    http_status = 422


class ContextLengthError(InvalidArgumentError):
    """The prompt (plus the requested completion) does not fit the context window."""

    exit_code = 5
    code = "context_length_exceeded"


class OverloadedError(MrError):
    """The request queue is full; try again later."""

    exit_code = 6
    http_status = 503


class TemplateError(MrError):
    """A chat template could not be rendered."""

    exit_code = 2
    http_status = 400


class EngineError(MrError):
    """llama.cpp reported a failure while decoding."""

    exit_code = 7
    http_status = 500


class CutShortError(EngineError):
    """An answer ended before the model finished it: the shared KV cache filled up and the
    request was preempted, or the model was unloaded or the server shut down under it. Never a
    complete answer: streams end with an error event, non-streamed requests get this status."""

    exit_code = 14
    http_status = 503
    code = "cut_short"


class ModelNotFoundError(MrError):
    """No model of that name is in the store."""

    exit_code = 4
    http_status = 404
    code = "model_not_found"


class ServerNotRunningError(MrError):
    """No mr server answers at MR_HOST."""

    exit_code = 13
    http_status = 503


__all__ = [
    "ContextLengthError",
    "CutShortError",
    "EngineError",
    "InvalidArgumentError",
    "ModelLoadError",
    "ModelNotFoundError",
    "MrError",
    "OverloadedError",
    "ServerNotRunningError",
    "TemplateError",
]
