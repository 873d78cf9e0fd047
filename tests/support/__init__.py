"""Helpers shared by the test folders, imported as `support` (tests/conftest.py puts tests/ on
sys.path): `support.models` writes tiny GGUFs, `support.serving` runs servers over a test store,
`support.sse` parses streams strictly."""

from support.models import answer_start, write_tiny_llama, write_tiny_reranker

__all__ = ["answer_start", "write_tiny_llama", "write_tiny_reranker"]
