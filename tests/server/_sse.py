"""The server tests' name for support.sse (shared with the other test folders)."""

from support.sse import parse_sse

__all__ = ["parse_sse"]
