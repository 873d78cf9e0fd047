"""The server tests' name for support.serving (shared with the other test folders)."""

from support.serving import (
    LAUNCH,
    LAUNCH_WITH,
    ServerThread,
    chat,
    free_port,
    loaded,
    start,
    wait_for,
    wait_healthy,
)

__all__ = ["LAUNCH", "LAUNCH_WITH", "ServerThread", "chat", "free_port", "loaded", "start", "wait_for",
           "wait_healthy"]
