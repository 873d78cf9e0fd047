"""A leased model's own request defaults (mr.store.defaults: an Ollama artifact's params and
system prompt), one lookup that every inference route shares (its own module: the routes' modules
import each other)."""

from __future__ import annotations

from mr.runner import Lease
from mr.store.defaults import NONE, ModelDefaults


def model_defaults(lease: Lease) -> ModelDefaults:
    """The model's defaults, or NONE (they change nothing): routes apply them unconditionally."""
    return lease.model.resolved.defaults or NONE
