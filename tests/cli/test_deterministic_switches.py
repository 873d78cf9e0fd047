"""The deterministic mode's switches: `mr serve --deterministic`, MR_DETERMINISTIC, and
`mr run --deterministic` (which runs in this process, as the answer it promises is the engine's)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mr.engine import LLM, EngineOptions, SamplingOptions


def test_the_environment_and_the_serve_flag_set_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from mr.cli.serve import _settings
    from mr.server import Settings
    from mr.server.app import runner_config

    assert not Settings.from_env({}).deterministic
    assert Settings.from_env({"MR_DETERMINISTIC": "1"}).deterministic
    assert _settings({"deterministic": True}).deterministic
    monkeypatch.setenv("MR_DETERMINISTIC", "1")
    settings = _settings({})
    assert settings.deterministic and runner_config(settings).engine.deterministic


def test_mr_run_deterministic_answers_as_the_engine_in_the_mode(tiny_gguf: Path, tmp_path: Path) -> None:
    # the same answer as the engine in the mode, bit for bit: the in-process run took the switch
    prompt = "Say something about the sea."
    args = [sys.executable, "-m", "mr", "run", str(tiny_gguf), prompt, "--temperature", "0",
            "--max-tokens", "10", "--deterministic"]
    env = {**os.environ, "MR_DEBUG": "", "MR_HOME": str(tmp_path), "MR_LOG_LEVEL": "INFO"}
    run = subprocess.run(args, capture_output=True, text=True, timeout=120, env=env)
    assert run.returncode == 0, run.stderr
    with LLM(tiny_gguf, EngineOptions(n_slots=1, deterministic=True)) as llm:
        ask = [{"role": "user", "content": prompt}]
        expected = llm.chat(ask, SamplingOptions(temperature=0), max_tokens=10).collect()
    assert run.stdout.strip() == expected.content.strip()
