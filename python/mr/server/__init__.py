"""mr's HTTP server: OpenAI, Docker Model Runner and Ollama APIs on Litestar."""

from mr.server.app import create_app
from mr.server.settings import Settings

__all__ = ["Settings", "create_app"]
