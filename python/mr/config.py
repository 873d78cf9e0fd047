"""mr's settings: every environment variable and default in one place."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_PORT = 12434  # Docker Model Runner's port


def home() -> Path:
    """MR_HOME: everything mr keeps (models, history, logs). Default ~/.mr."""
    return Path(os.environ.get("MR_HOME") or Path.home() / ".mr")


def models_dir() -> Path:
    """MR_MODELS_DIR: the model store root (Docker Model Runner's layout). Default $MR_HOME/models."""
    override = os.environ.get("MR_MODELS_DIR")
    return Path(override) if override else home() / "models"


def cache_dir() -> Path:
    """Downloads that are not models in the store (e.g. the embedded default model's wheel)."""
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(os.environ.get("MR_CACHE_DIR") or Path(xdg) / "mr")


def default_registry() -> str:
    """MR_DEFAULT_REGISTRY: the registry for names without one (Docker Hub on the wire)."""
    return os.environ.get("MR_DEFAULT_REGISTRY", "index.docker.io")


def host() -> str:
    """MR_HOST: where `mr` looks for a running server."""
    return os.environ.get("MR_HOST", f"http://127.0.0.1:{DEFAULT_PORT}")


def log_level() -> str:
    """MR_LOG_LEVEL: the level for mr's and llama.cpp's logs (llama.cpp is quiet by default)."""
    return os.environ.get("MR_LOG_LEVEL", "WARNING").upper()


# Context size used when neither the user nor the model's package says otherwise:
# the model's training context, capped so a small machine is not asked for a huge KV cache.
DEFAULT_CTX_CAP = 8192

KV_CELL_STEP = 256  # llama.cpp allocates a context's KV cache in steps of this many cells


def kv_cells(n_ctx: int, n_streams: int = 1) -> int:
    """The context llama.cpp really allocates for a requested `n_ctx` split into `n_streams` KV
    streams (one per slot with EngineOptions.per_slot_kv): each a multiple of 256 cells. Asking
    for exactly that keeps mr's context, the engine's batch cap and llama.cpp's own in agreement
    (sequences may fill every allocated cell anyway)."""
    per_stream = -(-n_ctx // n_streams)
    return n_streams * (-(-per_stream // KV_CELL_STEP) * KV_CELL_STEP)
