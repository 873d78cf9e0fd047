"""The model lifecycle behind the server: which models are loaded, for how long, in what memory."""

from mr.runner.duration import FOREVER, format_duration, parse_duration
from mr.runner.errors import InsufficientMemoryError, LoadTimeoutError, ModelBusyError
from mr.runner.loaded import Lease, LoadedModel
from mr.runner.memory import MemoryEstimate, estimate, parse_size
from mr.runner.runner import Runner, RunnerConfig
from mr.runner.settings import ModelSettings, SettingsFile
from mr.runner.source import ModelSource, PathSource, ResolvedModel, StoreSource

__all__ = [
    "FOREVER",
    "InsufficientMemoryError",
    "Lease",
    "LoadTimeoutError",
    "LoadedModel",
    "MemoryEstimate",
    "ModelBusyError",
    "ModelSettings",
    "ModelSource",
    "PathSource",
    "ResolvedModel",
    "Runner",
    "RunnerConfig",
    "SettingsFile",
    "StoreSource",
    "estimate",
    "format_duration",
    "parse_duration",
    "parse_size",
]
