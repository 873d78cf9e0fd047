"""Per-model runtime settings (context size, parallel slots, keep-alive, RPC workers), persisted
as JSON.

`mr configure --context-size 8192 --keep-alive 10m smollm2` (or POST /engines/configure) writes
them; the runner reads them each time it loads the model. Keys are canonical model references
(`docker.io/ai/smollm2:latest`) or model IDs (`sha256:...`), whichever the user named.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import threading
import time
from pathlib import Path

import msgspec
from filelock import FileLock

from mr.errors import InvalidArgumentError
from mr.rpc import parse_endpoints

log = logging.getLogger("mr.runner")
MAX_CTX = 1 << 20
MAX_SLOTS = 256
MODES = ("completion", "embedding", "reranking")


class ModelSettings(msgspec.Struct, kw_only=True, omit_defaults=True):
    context_size: int | None = None
    parallel: int | None = None
    keep_alive: float | None = None  # seconds; math.inf = forever (stored as -1)
    mode: str | None = None  # completion | embedding | reranking; None: what the GGUF says
    think: bool | None = None  # default for reasoning templates; None: the template's own
    rpc: list[str] | None = None  # RPC workers for its layers; [] none; None: the server's --rpc

    def validate(self) -> ModelSettings:
        if self.context_size is not None and not 0 < self.context_size <= MAX_CTX:
            raise _invalid("context_size", f"context_size must be in [1, {MAX_CTX}]")
        if self.parallel is not None and not 0 < self.parallel <= MAX_SLOTS:
            raise _invalid("parallel", f"parallel must be in [1, {MAX_SLOTS}]")
        if self.mode is not None and self.mode not in MODES:
            raise _invalid("mode", f"mode must be one of {', '.join(MODES)}")
        if self.rpc is not None:
            try:
                parse_endpoints(self.rpc)
            except InvalidArgumentError as exc:
                raise _invalid("rpc", str(exc)) from None
        return self

    def merged(self, other: ModelSettings) -> ModelSettings:
        """`other`'s set fields over this one's."""
        return ModelSettings(
            context_size=other.context_size if other.context_size is not None else self.context_size,
            parallel=other.parallel if other.parallel is not None else self.parallel,
            keep_alive=other.keep_alive if other.keep_alive is not None else self.keep_alive,
            mode=other.mode if other.mode is not None else self.mode,
            think=other.think if other.think is not None else self.think,
            rpc=other.rpc if other.rpc is not None else self.rpc,
        )


def _invalid(param: str, message: str) -> InvalidArgumentError:
    err = InvalidArgumentError(message)
    err.param = param
    return err


class _Stored(msgspec.Struct, kw_only=True, omit_defaults=True):
    context_size: int | None = None
    parallel: int | None = None
    keep_alive: float | None = None  # -1 = forever (JSON has no infinity)
    mode: str | None = None
    think: bool | None = None
    rpc: list[str] | None = None


class SettingsFile:
    """A small JSON file of {key: settings}. Writes are read-modify-write under a cross-process
    file lock, fsynced, then renamed into place. A damaged file reads as defaults (the server
    keeps running) but is never overwritten: the next write first moves it aside, and says so."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._lock = threading.Lock()

    def get(self, *keys: str) -> ModelSettings:
        data = self._read()
        for key in keys:
            if key in data:
                return _from_stored(data[key])
        return ModelSettings()

    def set(self, key: str, settings: ModelSettings) -> ModelSettings:
        """Merge `settings` into what is stored under `key`; returns the result."""
        settings.validate()
        with self._lock, self._file_lock():
            data = self._read(keep_damaged=True)
            merged = _from_stored(data.get(key, _Stored())).merged(settings)
            data[key] = _to_stored(merged)
            self._write(data)
        return merged

    def _file_lock(self) -> contextlib.AbstractContextManager[object]:
        if self.path is None:
            return contextlib.nullcontext()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        return FileLock(str(self.path) + ".lock", timeout=30)

    def all(self) -> dict[str, ModelSettings]:
        return {k: _from_stored(v) for k, v in self._read().items()}

    def _read(self, keep_damaged: bool = False) -> dict[str, _Stored]:
        if self.path is None or not self.path.is_file():
            return {}
        try:
            return msgspec.json.decode(self.path.read_bytes(), type=dict[str, _Stored])
        except (OSError, msgspec.DecodeError):
            # A damaged file must not stop the server: settings fall back to defaults. Before a
            # write replaces it, it is kept next to it for the user to recover.
            if keep_damaged:
                aside = self.path.with_name(f"{self.path.name}.damaged-{int(time.time())}")
                os.replace(self.path, aside)
                log.warning("%s was not valid settings JSON; moved aside to %s", self.path.name,
                            aside.name)
            else:
                log.warning("%s is not valid settings JSON: using defaults", self.path.name)
            return {}

    def _write(self, data: dict[str, _Stored]) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".settings-")
        with os.fdopen(fd, "wb") as f:
            f.write(json.dumps(msgspec.to_builtins(data), indent=2, sort_keys=True).encode())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # the rename itself survives a crash
        finally:
            os.close(dir_fd)


def _from_stored(s: _Stored) -> ModelSettings:
    keep = s.keep_alive
    return ModelSettings(context_size=s.context_size, parallel=s.parallel,
                         keep_alive=float("inf") if keep is not None and keep < 0 else keep,
                         mode=s.mode, think=s.think, rpc=s.rpc)


def _to_stored(s: ModelSettings) -> _Stored:
    keep = s.keep_alive
    return _Stored(context_size=s.context_size, parallel=s.parallel,
                   keep_alive=-1.0 if keep is not None and keep == float("inf") else keep,
                   mode=s.mode, think=s.think, rpc=s.rpc)


def parse_switch(value: bool | str | None, param: str) -> bool | None:
    """true/false, or on/off (yes/no, 1/0) as the CLI writes them."""
    if value is None or isinstance(value, bool):
        return value
    lowered = value.strip().lower()
    if lowered in ("on", "true", "yes", "1"):
        return True
    if lowered in ("off", "false", "no", "0"):
        return False
    raise _invalid(param, f"{param} must be on or off")
