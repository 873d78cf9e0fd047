"""Config fields from GGUF headers, split GGUF discovery, and broken files."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from mr.store.gguf_meta import (
    GGUFFormatError,
    format_parameters,
    parse_human,
    read_header,
    read_model,
    shard_paths,
)
from mr.units import human_bytes


def test_tiny_header(make_gguf) -> None:
    info = read_header(make_gguf(rows=32))
    assert info.architecture == "llama"
    assert info.quantization == "F32"
    assert info.parameters == 32 * 64
    assert info.context_length == 4096
    assert info.kv["general.architecture"] == "llama"
    assert info.kv["llama.context_length"] == "4096"
    assert info.kv["general.tags"] == "a, b"
    assert "tokenizer.ggml.tokens" not in info.kv  # 100 entries: too long for the config
    assert info.kv["tokenizer.chat_template"].startswith("{% for m")
    assert all(isinstance(v, str) for v in info.kv.values())


def test_matches_gguf_reader(make_gguf) -> None:
    from gguf import GGUFReader

    path = make_gguf(rows=8)
    ours = read_header(path)
    reader = GGUFReader(str(path))
    theirs = {k for k in reader.fields if not k.startswith("GGUF.")}
    assert set(ours.kv) == theirs - {"tokenizer.ggml.tokens"}
    assert ours.parameters == sum(int(t.n_elements) for t in reader.tensors)


@pytest.mark.slow
def test_real_model_header() -> None:
    from mr import default_model

    info = read_header(default_model.fetch())
    assert (info.architecture, info.quantization) == ("llama", "Q4_1")
    assert format_parameters(info.parameters) == "134.52M"
    assert info.context_length == 8192
    assert "tokenizer.ggml.merges" not in info.kv


def test_formats() -> None:
    assert format_parameters(134_515_008) == "134.52M"
    assert format_parameters(7_241_732_096) == "7.24B"
    assert format_parameters(999) == "999"
    assert human_bytes(268_800_000) == "256.35MiB"  # DMR's config `size`
    assert human_bytes(512) == "512B"
    assert human_bytes(5 << 40) == "5.00TiB" and human_bytes(3 << 50) == "3072.00TiB"
    assert parse_human("256.35 MiB") == parse_human("256.35MiB") == 256.35 * 1024**2
    assert parse_human("361.82 M") == parse_human("361.82M") == pytest.approx(361.82e6)
    assert parse_human("1.2B") == pytest.approx(1.2e9)
    assert parse_human("junk") is None


def _header(n_tensors: int, n_kv: int, version: int = 3) -> bytes:
    return b"GGUF" + struct.pack("<IQQ", version, n_tensors, n_kv)


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"GGML" + b"\0" * 40,
        _header(0, 0, version=1),
        _header(0, 0, version=99),
        _header(1 << 60, 0),
        _header(0, 1 << 60),
        _header(0, 1) + struct.pack("<Q", 1 << 40),  # key length past the end
        _header(0, 1) + struct.pack("<Q", 1) + b"k" + struct.pack("<I", 77),  # unknown type
        _header(0, 1) + struct.pack("<Q", 1) + b"k" + struct.pack("<IIQ", 9, 4, 1 << 50),
        _header(1, 0) + struct.pack("<Q", 1) + b"t" + struct.pack("<I", 9),  # too many dims
        _header(1, 0) + struct.pack("<Q", 1) + b"t" + struct.pack("<IQQ", 2, 1 << 40, 1 << 40),
        _header(2, 0),  # truncated
    ],
    ids=range(12),
)
def test_broken_files_are_clean_errors(content: bytes, tmp_path: Path) -> None:
    path = tmp_path / "bad.gguf"
    if 0 < len(content) < 24:
        content += b"\0" * (24 - len(content))
    path.write_bytes(content)
    with pytest.raises(GGUFFormatError):
        read_header(path)


def test_truncated_real_file(make_gguf, tmp_path: Path) -> None:
    data = make_gguf().read_bytes()
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(data[:200])
    with pytest.raises(GGUFFormatError):
        read_header(cut)


def test_shards(make_gguf, tmp_path: Path) -> None:
    paths = [make_gguf(f"m-{i:05d}-of-00003.gguf", split=(i - 1, 3), rows=8) for i in (1, 2, 3)]
    assert shard_paths(paths[0]) == paths
    with pytest.raises(GGUFFormatError, match="first shard"):
        shard_paths(paths[1])
    info = read_model(paths)
    assert info.parameters == 3 * 8 * 64
    assert info.size == sum(p.stat().st_size for p in paths)
    paths[2].unlink()
    with pytest.raises(GGUFFormatError, match="missing"):
        shard_paths(paths[0])
