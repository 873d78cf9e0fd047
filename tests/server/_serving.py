"""support.serving under its old name, for test_soak.py (a change in flight elsewhere) until it
imports support.serving; nothing else uses it."""

from support.serving import wait_for

__all__ = ["wait_for"]
