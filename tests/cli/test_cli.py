"""The first CLI: `mr --version`, `mr run PATH PROMPT`, fast help, one-line errors."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import mr


def mr_cli(*args: str, stdin: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mr", *args], input=stdin, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, "MR_DEBUG": ""})


def test_version() -> None:
    result = mr_cli("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"mr {mr.__version__}"


def test_version_command_names_llama_commit() -> None:
    result = mr_cli("version")
    assert result.returncode == 0
    assert "llama.cpp 0c1e57098bba" in result.stdout


def test_run_streams_an_answer(smollm2_path: Path) -> None:
    result = mr_cli("run", str(smollm2_path), "How fast does a cheetah run?", "--temperature", "0",
                    "--max-tokens", "40")
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.split()) >= 5  # an answer, whatever this CPU's kernels make of it


def prompt_tokens(verbose_output: str) -> int:
    match = re.search(r"prompt: (\d+) tokens", verbose_output)
    assert match, verbose_output
    return int(match.group(1))


def test_run_appends_piped_stdin(smollm2_path: Path) -> None:
    """Piped text joins the prompt exactly as if it had been typed after a blank line: the same
    prompt tokens and the same greedy answer (greedy wording itself differs between CPUs)."""
    args = ("run", str(smollm2_path), "--temperature", "0", "--max-tokens", "12", "--verbose", "--local")
    piped = mr_cli(*args, "Repeat the word in capitals:", stdin="banana\n")
    typed = mr_cli(*args, "Repeat the word in capitals:\n\nbanana\n", stdin="")
    bare = mr_cli(*args, "Repeat the word in capitals:", stdin="")
    for result in (piped, typed, bare):
        assert result.returncode == 0, result.stderr
    out = {name: r.stdout + r.stderr for name, r in (("piped", piped), ("typed", typed), ("bare", bare))}
    assert prompt_tokens(out["piped"]) == prompt_tokens(out["typed"]) > prompt_tokens(out["bare"])
    assert piped.stdout == typed.stdout


def test_missing_model_is_one_line_error(tmp_path: Path) -> None:
    result = mr_cli("run", str(tmp_path / "absent.gguf"), "hi")
    assert result.returncode == 3
    assert result.stderr.strip() == "Error: model file not found: absent.gguf"
    assert "Traceback" not in result.stderr


def test_help_imports_neither_engine_nor_native() -> None:
    code = (
        "import sys\n"
        "from mr.cli import cli\n"
        "try:\n    cli.main(['--help'], standalone_mode=False)\nexcept SystemExit:\n    pass\n"
        "bad = [m for m in sys.modules if m.startswith(('mr._native', 'mr.engine', 'mr.server', 'numpy'))]\n"
        "print(bad)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_logs_without_a_log_names_no_absolute_path(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "mr", "logs"], capture_output=True, text=True, timeout=60,
                            env={**os.environ, "MR_HOME": str(tmp_path / "home"), "MR_DEBUG": ""})
    assert result.returncode != 0 and "no server log yet" in result.stderr
    assert str(tmp_path) not in result.stderr  # it printed the absolute path before
    assert "$MR_HOME/logs/server.log" in result.stderr
