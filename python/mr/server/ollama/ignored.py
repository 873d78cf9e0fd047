"""Ollama request fields mr accepts but does not honour, named instead of silently dropped:
in an `X-Mr-Ignored-Fields` response header and, once per field, in the server log."""

from __future__ import annotations

import logging

from mr.server.ollama.protocol import ChatRequest, GenerateRequest, Options

HEADER = "X-Mr-Ignored-Fields"
log = logging.getLogger("mr.server")
_logged: set[str] = set()


def _options(options: Options | None) -> list[str]:
    # A per-request context size would mean reloading the model: the loaded context is used
    # (mr configure --context-size sets it per model).
    return ["options.num_ctx"] if options is not None and options.num_ctx is not None else []


def of_chat(data: ChatRequest) -> list[str]:
    return _options(data.options)


def of_generate(data: GenerateRequest) -> list[str]:
    names = _options(data.options)
    names += [name for name in ("context", "template", "suffix") if getattr(data, name)]
    return names


def headers(names: list[str], path: str) -> dict[str, str] | None:
    if not names:
        return None
    for name in names:
        if name not in _logged and len(_logged) < 64:
            _logged.add(name)
            log.warning("%s: ignoring the request field %s (not supported by mr)", path, name)
    return {HEADER: ", ".join(names)}
