"""GET /engines/requests[?model=M&after=ID]: the recorded requests, oldest first."""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar import Response, get
from litestar.params import Parameter

from mr.server.context import Req, server_context


@get("/engines/requests", summary="Recent requests and responses", tags=["Runtime"])
async def requests_route(request: Req, model: Annotated[str | None, Parameter()] = None,
                         after: Annotated[int, Parameter(ge=0)] = 0) -> Response[bytes]:
    log = server_context(request).request_log
    records = log.records(model, after) if log is not None else []
    return Response(msgspec.json.encode(records), media_type="application/json")
