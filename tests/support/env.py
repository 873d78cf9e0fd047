"""The environment of a child Python process that must import mr from this checkout."""

from __future__ import annotations

import os
from pathlib import Path

PYTHON_DIR = Path(__file__).resolve().parents[2] / "python"


def subprocess_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in [str(PYTHON_DIR), env.get("PYTHONPATH")] if p)
    return env
