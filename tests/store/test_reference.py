"""Docker Model Runner's reference normalisation and display form."""

from __future__ import annotations

import pytest

from mr.store.errors import InvalidReferenceError
from mr.store.reference import is_insecure, parse

NORMALISED = [
    ("smollm2", "docker.io/ai/smollm2:latest"),
    ("ai/smollm2", "docker.io/ai/smollm2:latest"),
    ("ai/smollm2:latest", "docker.io/ai/smollm2:latest"),
    ("SmolLM2", "docker.io/ai/smollm2:latest"),
    ("ai/SmolLM2:Q4_K_M", "docker.io/ai/smollm2:Q4_K_M"),
    ("gemma3:v1", "docker.io/ai/gemma3:v1"),
    ("myorg/model", "docker.io/myorg/model:latest"),
    ("docker.io/ai/smollm2", "docker.io/ai/smollm2:latest"),
    ("index.docker.io/ai/smollm2:1", "docker.io/ai/smollm2:1"),
    ("registry-1.docker.io/ai/smollm2", "docker.io/ai/smollm2:latest"),
    ("hf.co/bartowski/Llama-3.2-1B-GGUF", "huggingface.co/bartowski/llama-3.2-1b-gguf:latest"),
    ("hf.co/org/Repo:Q8_0", "huggingface.co/org/repo:Q8_0"),
    ("localhost:5000/test/m:v1", "localhost:5000/test/m:v1"),
    ("LOCALHOST:5000/Test/M", "localhost:5000/test/m:latest"),
    ("127.0.0.1:5000/a/b/c:t", "127.0.0.1:5000/a/b/c:t"),
    ("localhost/m", "localhost/m:latest"),
    ("ghcr.io/org/model:1.0", "ghcr.io/org/model:1.0"),
    ("ai/smollm2@sha256:" + "a" * 64, "docker.io/ai/smollm2@sha256:" + "a" * 64),
    ("  smollm2  ", "docker.io/ai/smollm2:latest"),
]


@pytest.mark.parametrize(("text", "stored"), NORMALISED)
def test_normalisation(text: str, stored: str) -> None:
    assert parse(text).stored == stored


DISPLAY = [
    ("docker.io/ai/gemma3:latest", "gemma3"),
    ("ai/gemma3:v1", "gemma3:v1"),
    ("docker.io/myorg/model:latest", "myorg/model"),
    ("docker.io/ai/x/y:latest", "ai/x/y"),
    ("localhost:5000/test/m:v1", "localhost:5000/test/m:v1"),
    ("huggingface.co/org/repo:latest", "huggingface.co/org/repo"),
    ("ai/smollm2@sha256:" + "b" * 64, "smollm2@sha256:" + "b" * 64),
]


@pytest.mark.parametrize(("text", "shown"), DISPLAY)
def test_display(text: str, shown: str) -> None:
    assert parse(text).display == shown


def test_familiar_keeps_namespace() -> None:
    assert parse("smollm2").familiar == "ai/smollm2"
    assert parse("ai/smollm2:v2").familiar == "ai/smollm2:v2"


def test_default_registry_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MR_DEFAULT_REGISTRY", "localhost:5000")
    ref = parse("smollm2")
    assert ref.stored == "localhost:5000/ai/smollm2:latest"
    assert ref.display == "smollm2"
    assert ref.wire_registry == "localhost:5000"
    assert parse("docker.io/ai/x").display == "docker.io/ai/x"


def test_wire_host_of_docker_hub() -> None:
    assert parse("smollm2").wire_registry == "index.docker.io"
    assert parse("ghcr.io/a/b").wire_registry == "ghcr.io"


@pytest.mark.parametrize(
    "text",
    ["", " ", "a b", "ai/x:", "ai/x:-bad", "ai/x@sha256:123", "ai/x@sha256:../../x",
     "sha256:" + "a" * 64, "Ai/../x", "ai//x", "ai/x:" + "t" * 200, "x\0y", "a" * 600,
     "bad_host!/x/y", "ai/\nx", "ai/%2e%2e/x"],
)
def test_invalid_references(text: str) -> None:
    with pytest.raises(InvalidReferenceError):
        parse(text)


def test_insecure_hosts(monkeypatch: pytest.MonkeyPatch) -> None:
    assert is_insecure("localhost:5000")
    assert is_insecure("127.0.0.1:1234")
    assert is_insecure("box.local")
    assert not is_insecure("docker.io")
    assert not is_insecure("ghcr.io")
    monkeypatch.setenv("MR_INSECURE_REGISTRIES", "reg.internal:5000")
    assert is_insecure("reg.internal:5000")
