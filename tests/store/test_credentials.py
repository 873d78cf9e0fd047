"""Registry credentials from the Docker config: inline entries and credential helper programs."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest

from mr.store import credentials

HOST = "registry.example.com"


def _config(tmp_path: Path, doc: dict[str, object]) -> None:
    """The Docker config the store tests point DOCKER_CONFIG at (conftest's _isolated)."""
    directory = tmp_path / "docker"
    directory.mkdir(exist_ok=True)
    (directory / "config.json").write_text(json.dumps(doc))


def _helper(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, script: str) -> Path:
    """A `docker-credential-<name>` program on PATH; it logs the server it was asked about."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    program = bin_dir / f"docker-credential-{name}"
    program.write_text(f"#!/bin/sh\nread server\necho \"$1 $server\" >> {bin_dir}/asked\n{script}\n")
    program.chmod(program.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    return bin_dir / "asked"


def _basic(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


def test_inline_auth_and_user_password(tmp_path: Path) -> None:
    _config(tmp_path, {"auths": {HOST: {"auth": _basic("ann", "pw")}}})
    assert credentials.lookup(HOST, HOST) == _basic("ann", "pw")
    _config(tmp_path, {"auths": {f"https://{HOST}": {"username": "bo", "password": "x:y"}}})
    assert credentials.lookup(HOST, HOST) == _basic("bo", "x:y")
    assert credentials.lookup("other.example.com", "other.example.com") is None


def test_a_registrys_credential_helper_is_asked(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    asked = _helper(tmp_path, monkeypatch, "fake",
                    'echo \'{"ServerURL": "x", "Username": "carol", "Secret": "s3cret"}\'')
    _config(tmp_path, {"credHelpers": {HOST: "fake"}})
    assert credentials.lookup(HOST, HOST) == _basic("carol", "s3cret")
    assert asked.read_text().split() == ["get", HOST]


def test_the_credentials_store_is_asked_last(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    _helper(tmp_path, monkeypatch, "desk", 'echo \'{"Username": "dan", "Secret": "pw"}\'')
    _config(tmp_path, {"credsStore": "desk"})
    assert credentials.lookup(HOST, HOST) == _basic("dan", "pw")
    _config(tmp_path, {"credsStore": "desk", "auths": {HOST: {"auth": _basic("eve", "pw")}}})
    assert credentials.lookup(HOST, HOST) == _basic("eve", "pw")


@pytest.mark.parametrize("script", [
    "echo 'credentials not found in native keychain'; exit 1",  # the protocol's "none"
    "echo 'not json'",
    'echo \'{"Username": "", "Secret": "pw"}\'',
])
def test_a_helper_without_an_answer_gives_none(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               script: str) -> None:
    _helper(tmp_path, monkeypatch, "fake", script)
    _config(tmp_path, {"credHelpers": {HOST: "fake"}})
    assert credentials.lookup(HOST, HOST) is None


def test_a_missing_or_oddly_named_helper_is_skipped(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    asked = _helper(tmp_path, monkeypatch, "fake", "exit 1")
    _config(tmp_path, {"credHelpers": {HOST: "../fake"}, "credsStore": "absent-helper"})
    assert credentials.lookup(HOST, HOST) is None
    assert not asked.exists()
