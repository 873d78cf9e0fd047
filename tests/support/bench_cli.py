"""`python -m bench ...` as a child process that cannot outlive its test.

The bench starts servers of its own (mr serve, llama-server). subprocess.run's timeout kills only
the bench, which leaves those servers running, orphaned, taking the cores from every later test.
So the bench runs in a session of its own, and whatever of that process group is left when it
ends (a timeout, a crash) is killed."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_bench(args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    """The finished bench run (stdout and stderr captured); raises TimeoutExpired after `timeout`
    seconds. Either way, whatever the bench started and left running is killed."""
    cmd = [sys.executable, "-m", "bench", *args]
    with subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          start_new_session=True) as proc:
        try:
            out, err = proc.communicate(timeout=timeout)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)
