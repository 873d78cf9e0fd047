"""The app's typed state: settings, the runner, the store and the metrics, one object."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from litestar import Request

from mr.errors import MrError

if TYPE_CHECKING:
    from mr.runner import Runner
    from mr.server.metrics import Metrics
    from mr.server.requestlog import RequestLog
    from mr.server.settings import Settings
    from mr.store import Store


@dataclass
class ServerContext:
    settings: Settings
    runner: Runner
    metrics: Metrics
    store: Store | None = None
    request_log: RequestLog | None = None
    started_at: float = field(default_factory=time.time)

    def require_store(self) -> Store:
        if self.store is None:
            raise MrError("this server has no model store")
        return self.store


STATE_KEY = "mr"
Req = Request[Any, Any, Any]


def server_context(request: Req) -> ServerContext:
    return cast(ServerContext, request.app.state[STATE_KEY])  # app.create_app puts it there
