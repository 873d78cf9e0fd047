"""Errors of the model lifecycle, mapped to HTTP statuses like every mr error."""

from __future__ import annotations

from mr.errors import MrError, OverloadedError


class InsufficientMemoryError(MrError):
    """The model cannot fit the memory budget even with every other model unloaded (HTTP 507)."""

    exit_code = 8
    http_status = 507
    code = "insufficient_memory"


class ModelBusyError(OverloadedError):
    """No room right now: the models that would have to be evicted are serving requests (503)."""

    code = "model_busy"


class LoadTimeoutError(OverloadedError):
    """The model is still loading after the wait limit (503, retry later)."""

    code = "model_loading"
