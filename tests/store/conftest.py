"""Fixtures of the store tests: an isolated store, tiny GGUF files, a real registry, a stub."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from support.registry_stub import StubRegistry


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test gets its own store root, MR_HOME and an empty Docker config."""
    monkeypatch.setenv("MR_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MR_MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    monkeypatch.delenv("MR_DEFAULT_REGISTRY", raising=False)
    monkeypatch.delenv("MR_INSECURE_REGISTRIES", raising=False)


@pytest.fixture
def store(tmp_path: Path):
    from mr.store import Store

    return Store(tmp_path / "models")


def write_gguf(path: Path, *, arch: str = "llama", rows: int = 16, seed: int = 0,
               kv: dict[str, str] | None = None, split: tuple[int, int] | None = None,
               ctx: int = 4096,
               template: str | None = "{% for m in messages %}{{ m.content }}{% endfor %}") -> Path:
    """A small valid GGUF: a few header keys, a 100-token vocab, one F32 tensor of rows x 64
    (with a chat template unless `template` is None)."""
    import gguf
    import numpy as np

    w = gguf.GGUFWriter(str(path), arch)
    w.add_context_length(ctx)
    w.add_block_count(1)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    w.add_name(f"tiny-{seed}")
    w.add_array("general.tags", ["a", "b"])
    w.add_array("tokenizer.ggml.tokens", [f"t{i}" for i in range(100)])
    if template is not None:
        w.add_chat_template(template)
    for key, value in (kv or {}).items():
        w.add_string(key, value)
    if split is not None:
        w.add_uint16("split.no", split[0])
        w.add_uint16("split.count", split[1])
    rng = np.random.default_rng(seed)
    w.add_tensor(f"blk.{seed}.weight", rng.random((rows, 64), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


@pytest.fixture
def make_gguf(tmp_path: Path) -> Callable[..., Path]:
    counter = iter(range(10_000))

    def make(name: str | None = None, **kwargs) -> Path:
        n = next(counter)
        kwargs.setdefault("seed", n)
        directory = tmp_path / "src"
        directory.mkdir(exist_ok=True)
        return write_gguf(directory / (name or f"tiny-{n}.gguf"), **kwargs)

    return make


@pytest.fixture
def stub() -> Iterator[StubRegistry]:
    server = StubRegistry()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def fast_client():
    """A registry client factory with instant, recorded backoff."""
    from mr.store.registry import RegistryClient, RetryPolicy

    def make(host: str, sleeps: list[float] | None = None, attempts: int = 4,
             read_timeout: float = 5) -> RegistryClient:
        record = sleeps if sleeps is not None else []
        return RegistryClient(host, retry=RetryPolicy(attempts=attempts, base_s=0.001, cap_s=0.01),
                              sleep=record.append, timeout=(5, read_timeout))

    return make

