"""The CLI explains itself (`mr --help`), `mr show`, `mr purge`, `configure --mode/--think`,
and the interactive chat's welcome line and @FILE."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import click
import pexpect
import pytest
from click.testing import CliRunner

from mr.cli import COMMANDS, cli
from support.models import write_tiny_llama, write_tiny_reranker

THINK = Path(__file__).parents[1] / "data" / "think.jinja"
TOOLS = Path(__file__).parents[1] / "data" / "hermes_tools.jinja"


@pytest.fixture
def store_env(tmp_path: Path, tiny_gguf: Path, smollm2_path: Path) -> dict[str, str]:
    from mr.store import Store, package_gguf

    root = tmp_path / "models"
    store = Store(root)
    license_file = tmp_path / "LICENSE"
    license_file.write_text("Tiny Test License\nUse it for tests only.\n")
    package_gguf(store, tiny_gguf, "ai/tiny", licenses=[license_file])
    package_gguf(store, tiny_gguf, "ai/tiny-think", chat_template=THINK)
    package_gguf(store, write_tiny_reranker(smollm2_path, tmp_path / "rr.gguf"), "ai/tiny-rerank")
    return {"MR_MODELS_DIR": str(root), "MR_HOME": str(tmp_path / "home"), "MR_HOST": "http://127.0.0.1:9"}


def invoke(env: dict[str, str], *args: str, stdin: str | None = None) -> click.testing.Result:
    return CliRunner().invoke(cli, list(args), env=env, input=stdin, catch_exceptions=False)


def test_help_lists_every_command_with_its_description() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    out = result.output
    assert "Models commands:" in out and "Running commands:" in out
    ctx = click.Context(cli)
    for verb in set(COMMANDS) - {"ls"}:
        line = next((raw for raw in out.splitlines() if raw.strip().startswith(verb + " ")), None)
        assert line is not None, f"{verb} is not listed with a description"
        own = cli.get_command(ctx, verb).get_short_help_str(300).rstrip(".")  # type: ignore[union-attr]
        listed = " ".join(out[out.index(line):].split("\n\n")[0].split())  # its wrapped description
        assert own.split("(")[0].strip() in listed, (verb, own, listed)


def test_show_summarises_a_model(store_env: dict[str, str]) -> None:
    result = invoke(store_env, "show", "ai/tiny")
    assert result.exit_code == 0, result.output
    for word in ("architecture", "llama", "parameters", "quantization", "F16", "context length",
                 "Capabilities", "completion", "Tiny Test License"):
        assert word in result.output, word
    info = json.loads(invoke(store_env, "show", "ai/tiny", "--json").output)
    assert info["architecture"] == "llama" and info["context_length"] == 512
    assert info["capabilities"] == ["completion"] and info["licenses"][0].startswith("Tiny Test License")
    think = json.loads(invoke(store_env, "show", "ai/tiny-think", "--json").output)
    assert "reasoning" in think["capabilities"]
    assert invoke(store_env, "show", "ai/tiny-think", "--template").output == THINK.read_text() + "\n"
    rerank = json.loads(invoke(store_env, "show", "ai/tiny-rerank", "--json").output)
    assert rerank["capabilities"] == ["reranking"] and rerank["mode"] == "reranking"
    absent = subprocess.run([sys.executable, "-m", "mr", "show", "ai/absent"], capture_output=True, text=True,
                            env={**os.environ, **store_env, "MR_DEBUG": ""}, timeout=60)
    assert absent.returncode == 4 and absent.stderr.strip() == "Error: no such model: ai/absent"


def test_show_names_tools_vision_and_embedding(store_env: dict[str, str], tiny_gguf: Path,
                                               smollm2_path: Path, tmp_path: Path) -> None:
    from mr.store import Store, package_gguf

    store = Store(Path(store_env["MR_MODELS_DIR"]))
    package_gguf(store, tiny_gguf, "ai/tiny-tools", chat_template=TOOLS)
    package_gguf(store, tiny_gguf, "ai/tiny-vision", mmproj=tiny_gguf)
    package_gguf(store, write_tiny_llama(smollm2_path, tmp_path / "embed.gguf", pooling=1), "ai/tiny-embed")

    def caps(ref: str) -> list[str]:
        return json.loads(invoke(store_env, "show", ref, "--json").output)["capabilities"]

    assert caps("ai/tiny-tools") == ["completion", "tools"]
    assert caps("ai/tiny-vision") == ["completion", "vision"]
    assert caps("ai/tiny-embed") == ["embedding"]
    assert "embedding" in invoke(store_env, "show", "ai/tiny-embed").output


def test_purge_asks_or_needs_force(store_env: dict[str, str]) -> None:
    refused = invoke(store_env, "purge")  # not a terminal: no question, no removal
    assert refused.exit_code == 2 and "--force" in refused.output
    assert len(json.loads(invoke(store_env, "ls", "--json").output)) == 3
    env = {**os.environ, **store_env, "TERM": "dumb"}
    child = pexpect.spawn(sys.executable, ["-m", "mr", "purge"], env=env, encoding="utf-8", timeout=60)
    child.expect_exact("Remove all 3 models")
    child.sendline("n")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus != 0
    assert len(json.loads(invoke(store_env, "ls", "--json").output)) == 3
    done = invoke(store_env, "purge", "-f")
    assert done.exit_code == 0 and "Removed 3 models." in done.output
    assert json.loads(invoke(store_env, "ls", "--json").output) == []
    assert not any((Path(store_env["MR_MODELS_DIR"]) / "blobs" / "sha256").iterdir())  # blobs gone too
    assert "No models" in invoke(store_env, "purge", "-f").output


def test_configure_mode_and_think_offline(store_env: dict[str, str]) -> None:
    result = invoke(store_env, "configure", "--mode", "reranking", "--think", "off", "ai/tiny")
    assert result.exit_code == 0, result.output
    saved = json.loads((Path(store_env["MR_HOME"]) / "model-settings.json").read_text())
    assert saved["docker.io/ai/tiny:latest"] == {"mode": "reranking", "think": False}
    assert invoke(store_env, "configure", "--mode", "dreaming", "ai/tiny").exit_code == 2


def test_welcome_line_and_at_file(tiny_gguf: Path, tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text(" ".join(f"word{i}" for i in range(60)))
    env = {**os.environ, "MR_HOME": str(tmp_path), "MR_HOST": "http://127.0.0.1:9", "TERM": "dumb"}
    args = ["-m", "mr", "run", str(tiny_gguf), "--max-tokens", "2", "--verbose"]
    child = pexpect.spawn(sys.executable, args, env=env, encoding="utf-8", timeout=60, dimensions=(40, 200))
    try:
        child.expect(r"Type /\? for help, /bye or Ctrl\+D to leave")
        child.expect_exact("> ")
        child.sendline("hi")
        child.expect(r"prompt: (\d+) tokens")
        plain = int(child.match.group(1))
        child.expect_exact("> ")
        child.sendline(f"@{notes} Summarise that.")
        child.expect(r"prompt: (\d+) tokens")
        assert int(child.match.group(1)) > plain + 60  # the file's 60 words went in
        child.expect_exact("> ")
        (tmp_path / "long.txt").write_text("word " * 2000)
        child.sendline(f"@{tmp_path / 'long.txt'}")  # more than the context holds: said, not fatal
        child.expect("Error: this request needs")
        child.expect_exact("> ")
        child.sendline(f"@{tmp_path / 'absent.txt'}")
        child.expect(re.escape("Error: cannot read"))
        child.expect_exact("> ")
        child.sendline("/bye")
        child.expect(pexpect.EOF)
    finally:
        if child.isalive():
            child.terminate(force=True)
