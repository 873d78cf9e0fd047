"""The request log (Docker Model Runner's `docker model requests`): the last N inference
request/response pairs per model, with timings, status and token counts, bodies capped.

Headers are never recorded, so neither are Authorization or x-api-key; the server's own key is
also scrubbed from bodies, as are JSON fields named like credentials.
"""

from __future__ import annotations

from mr.server.requestlog.capture import requestlog_middleware
from mr.server.requestlog.log import Record, RequestLog
from mr.server.requestlog.route import requests_route

__all__ = ["Record", "RequestLog", "requestlog_middleware", "requests_route"]
