"""Real `mr worker` processes on loopback ports, for the RPC tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Worker:
    """`python -m mr worker` on a free loopback port; stderr (its client log) goes to a file."""

    def __init__(self, log_dir: Path, mem_mib: int | None = None, port: int | None = None,
                 idle_timeout: int | None = None) -> None:
        self.port = port or free_port()
        self.endpoint = f"127.0.0.1:{self.port}"
        self.mem_mib = mem_mib
        self.idle_timeout = idle_timeout
        self.log = log_dir / f"worker-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60) -> Worker:
        args = [sys.executable, "-m", "mr", "worker", "--port", str(self.port), "--threads", "1"]
        if self.mem_mib:
            args += ["--mem", str(self.mem_mib)]
        if self.idle_timeout is not None:
            args += ["--idle-timeout", str(self.idle_timeout)]
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=log, env={**os.environ, "MR_DEBUG": ""})
        deadline = time.monotonic() + timeout
        while "serving this machine's backend" not in self.log.read_text() or not self._listening():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"mr worker did not start: {self.log.read_text()}")
            time.sleep(0.1)
        return self

    def _listening(self) -> bool:
        # /proc, not a connection: a probe would be a client in the worker's log
        hex_port = f":{self.port:04X}"
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            try:
                lines = Path(table).read_text().splitlines()[1:]
            except OSError:
                continue
            if any(line.split()[1].endswith(hex_port) and line.split()[3] == "0A" for line in lines):
                return True
        return False

    def kill(self) -> None:
        """SIGKILL: the worker vanishes without a word, as a crashed or unplugged host would."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()

    def clients(self) -> list[str]:
        return [line for line in self.log.read_text().splitlines() if " client " in line]

    def __enter__(self) -> Worker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
