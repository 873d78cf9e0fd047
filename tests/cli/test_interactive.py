"""The interactive `mr run MODEL` session, driven through a pseudo-terminal."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pexpect
import pytest


@pytest.fixture
def session(smollm2_path: Path, tmp_path: Path):
    env = {**os.environ, "MR_HOME": str(tmp_path), "MR_HOST": "http://127.0.0.1:9", "TERM": "dumb"}
    child = pexpect.spawn(sys.executable, ["-m", "mr", "run", str(smollm2_path), "--temperature", "0",
                                           "--max-tokens", "300"],
                          env=env, encoding="utf-8", timeout=60, dimensions=(40, 200))
    child.expect_exact("> ")
    yield child
    if child.isalive():
        child.terminate(force=True)


def test_the_history_file_may_be_put_elsewhere(smollm2_path: Path, tmp_path: Path) -> None:
    env = {**os.environ, "MR_HOME": str(tmp_path / "home"), "MR_HOST": "http://127.0.0.1:9", "TERM": "dumb"}
    child = pexpect.spawn(sys.executable, ["-m", "mr", "run", str(smollm2_path), "--history",
                                           str(tmp_path / "lines")], env=env, encoding="utf-8", timeout=60)
    child.expect_exact("> ")
    child.sendline("/set system Be brief.")
    child.expect_exact("Set system message.")
    child.sendline("/bye")
    child.expect(pexpect.EOF)
    child.close()
    assert "/set system Be brief." in (tmp_path / "lines").read_text()
    assert not (tmp_path / "home" / "history").exists()


def test_help_system_multiline_and_bye(session, tmp_path: Path) -> None:
    session.sendline("/?")
    session.expect_exact("/set system")
    session.expect_exact("> ")
    session.sendline("/set system Answer in one short sentence.")
    session.expect_exact("Set system message.")
    session.expect_exact("> ")
    session.sendline('"""')
    session.sendline("What is the capital")
    session.sendline('of France?"""')
    session.expect("Paris")
    session.expect_exact("> ")
    session.sendline("/set parameter temperature 0.2")
    session.expect_exact("Set parameter 'temperature' to '0.2'.")
    session.sendline("/bye")
    session.expect(pexpect.EOF)
    session.close()
    assert session.exitstatus == 0
    assert "capital" in (tmp_path / "history").read_text()  # the line history is kept


def test_ctrl_c_stops_the_answer_not_the_session(session) -> None:
    session.sendline("Write a very long essay about the history of Rome.")
    session.expect_exact("history of Rome.\r\n")  # the echo of the question
    session.expect(r"\w+ \w+ \w+ \w+")  # the answer is streaming
    session.sendcontrol("c")
    session.expect_exact("> ", timeout=10)
    session.sendline("/clear")
    session.expect_exact("Cleared session context.")
    session.sendline("How fast does a cheetah run?")
    session.expect("(?i)cheetah")
    session.expect_exact("> ", timeout=60)
    session.sendeof()
    session.expect(pexpect.EOF)
