"""The whole path a user takes: package -> push -> rm -> pull (by `mr run`) -> the model answers."""

from __future__ import annotations

import subprocess
import sys

import pytest

from support.env import subprocess_env


def mr(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mr", *args], capture_output=True, text=True,
                          timeout=300, env=subprocess_env())


@pytest.mark.slow
def test_package_push_rm_then_run_pulls_and_answers(registry, smollm2_path) -> None:
    ref = f"{registry.host}/ai/smollm2:test"
    assert mr("package", "--gguf", str(smollm2_path), "--push", ref).returncode == 0
    assert mr("rm", ref).returncode == 0
    assert mr("list", "-q").stdout.strip() == ""
    result = mr("run", ref, "How fast does a cheetah run?", "--temperature", "0", "--max-tokens", "40")
    assert result.returncode == 0, result.stderr
    assert "Pulling" in result.stderr
    assert "cheetah" in result.stdout.lower()
    assert mr("inspect", ref).returncode == 0  # it is in the store now
    again = mr("run", ref, "Say hi", "--max-tokens", "5")
    assert again.returncode == 0 and "Pulling" not in again.stderr


def test_run_unknown_store_model_is_a_one_line_error(registry) -> None:
    result = mr("run", f"{registry.host}/ai/absent:latest", "hi")
    assert result.returncode == 4  # the registry answers; the model is not there
    assert result.stderr.strip().splitlines()[-1].startswith("Error: model not found")
    assert "Traceback" not in result.stderr
