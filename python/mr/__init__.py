"""mr: a local model runner (llama.cpp behind a native core, an OCI model store, a CLI, a server)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("mr")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
