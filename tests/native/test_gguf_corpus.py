"""A corpus of broken GGUF files: each is a clean ModelLoadError, never an abort or a huge
allocation (RELIABILITY.md item 10). The loads run in a child process so that a crash would
show up as a failed test naming the case, not as a dead test session."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

U64 = 1 << 62
GGUF_STRING, GGUF_UINT32, GGUF_ARRAY = 8, 4, 9
F32 = 0


def header(version: int = 3, n_tensors: int = 0, n_kv: int = 0) -> bytes:
    return b"GGUF" + struct.pack("<IQQ", version, n_tensors, n_kv)


def gstr(text: str, length: int | None = None) -> bytes:
    data = text.encode()
    return struct.pack("<Q", len(data) if length is None else length) + data


def kv_str(key: str, value: str, value_len: int | None = None) -> bytes:
    return gstr(key) + struct.pack("<I", GGUF_STRING) + gstr(value, value_len)


def tensor_info(name: str, dims: list[int], ggml_type: int = F32, offset: int = 0) -> bytes:
    return gstr(name) + struct.pack("<I", len(dims)) + struct.pack(f"<{len(dims)}Q", *dims) + struct.pack(
        "<IQ", ggml_type, offset)


ARCH = kv_str("general.architecture", "llama")
CASES: dict[str, bytes] = {
    "empty": b"",
    "bad_magic": b"GGUX" + header()[4:],
    "version_zero": header(version=0),
    "version_future": header(version=999),
    "absurd_tensor_count": header(n_tensors=U64),
    "absurd_kv_count": header(n_kv=U64),
    "absurd_key_length": header(n_kv=1) + gstr("k", length=U64),
    "string_past_end": header(n_kv=1) + kv_str("general.name", "x", value_len=1 << 40),
    "absurd_array": header(n_kv=1) + gstr("a") + struct.pack("<IIQ", GGUF_ARRAY, GGUF_UINT32, U64),
    "bad_value_type": header(n_kv=1) + gstr("k") + struct.pack("<I", 77) + b"\0" * 8,
    "truncated_at_value_type": header(n_kv=1) + gstr("k"),  # the file ends where a type was due
    "alignment_not_u32": header(n_kv=2) + ARCH + kv_str("general.alignment", "32"),
    "overflowing_dims": header(n_tensors=1, n_kv=1) + ARCH + tensor_info("t", [1 << 40] * 4),
    "bad_tensor_type": header(n_tensors=1, n_kv=1) + ARCH + tensor_info("t", [4], ggml_type=999),
    "offset_past_end": header(n_tensors=1, n_kv=1) + ARCH + tensor_info("t", [4], offset=1 << 40),
    "too_many_dims": header(n_tensors=1, n_kv=1) + ARCH + gstr("t") + struct.pack("<I", 1000),
    "zero_dim": header(n_tensors=1, n_kv=1) + ARCH + tensor_info("t", [4, 0, 4]),  # no division by it
    "no_tensors_no_vocab": header(n_kv=1) + ARCH,
}

CHILD = """
import json, sys
from mr import _native
from mr.errors import ModelLoadError
results = {}
for name, path in json.loads(sys.argv[1]).items():
    try:
        _native.Model(path)
        results[name] = "loaded"
    except ModelLoadError as exc:
        results[name] = "ModelLoadError"
    except Exception as exc:
        results[name] = type(exc).__name__
    print(name, results[name], flush=True)
print(json.dumps(results))
"""


def _tokens(data: bytes, n: int) -> list[tuple[int, int]]:
    """(offset of the length field, length) of the first `n` strings of the vocab array."""
    key = b"tokenizer.ggml.tokens"
    at = data.index(key) + len(key)
    assert struct.unpack_from("<II", data, at) == (GGUF_ARRAY, GGUF_STRING)
    pos, out = at + 16, []
    for _ in range(n):
        (length,) = struct.unpack_from("<Q", data, pos)
        out.append((pos, length))
        pos += 8 + length
    return out


def _vocab_cases(real: bytes) -> dict[str, bytes]:
    """Broken vocabularies cut from a real file (SmolLM2's tokenizer), and garbled weights."""
    pos, length = _tokens(real, 301)[300]
    past_end, shifted = bytearray(real), bytearray(real)
    struct.pack_into("<Q", past_end, pos, 1 << 40)  # one token's text runs past the end of the file
    struct.pack_into("<Q", shifted, pos, length + 3)  # every later field is read 3 bytes off
    weights = bytearray(real)
    weights[len(real) * 2 // 3: len(real) * 2 // 3 + 64] = b"\xff" * 64  # NaNs in the tensor data
    return {"vocab_string_past_end": bytes(past_end), "vocab_shifted": bytes(shifted),
            "garbled_weights": bytes(weights)}


def _load_all(paths: dict[str, str]) -> dict[str, str]:
    # A 6 GiB cap: an absurd size must be refused, not allocated. ASan's shadow memory cannot live
    # under an address-space limit, so under scripts/sanitize.sh the cap is ASan's own, per
    # allocation, and stricter: an allocation past it is reported (a `new` ends the process), where
    # the limit let it fail with bad_alloc. The reader must refuse such a size before allocating.
    code, env = "import resource; resource.setrlimit(resource.RLIMIT_AS, (6 << 30, 6 << 30))\n" + CHILD, None
    if "libasan" in os.environ.get("LD_PRELOAD", ""):
        cap = "allocator_may_return_null=1:max_allocation_size_mb=6144"
        code, env = CHILD, {**os.environ, "ASAN_OPTIONS": f"{os.environ.get('ASAN_OPTIONS', '')}:{cap}"}
    result = subprocess.run([sys.executable, "-c", code, json.dumps(paths)], capture_output=True,
                            text=True, timeout=120, env=env)
    last = result.stdout.splitlines()[-1:]
    assert result.returncode == 0, f"crashed after: {last}\n{result.stderr[-2000:]}"
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_each_broken_gguf_is_a_clean_error(tmp_path: Path, tiny_gguf: Path) -> None:
    paths = {}
    for name, data in {**CASES, **_vocab_cases(tiny_gguf.read_bytes())}.items():
        paths[name] = str(tmp_path / f"{name}.gguf")
        Path(paths[name]).write_bytes(data)
    outcome = _load_all(paths)
    # Weights are not validated: NaNs load (and only make a useless model). Everything else is refused.
    assert outcome.pop("garbled_weights") == "loaded"
    assert outcome == dict.fromkeys(outcome, "ModelLoadError")


def test_a_vocab_with_a_token_twice_is_a_clean_error(tmp_path: Path, tiny_gguf: Path) -> None:
    """A hostile GGUF from a registry must not kill `mr serve` at its first request (RELIABILITY 10,
    13): two vocab entries with the same text are a ModelLoadError, not an abort (llama.cpp's
    GGML_ASSERT in llama-vocab.cpp; vendor/patches/0009)."""
    real = bytearray(tiny_gguf.read_bytes())
    tokens = _tokens(bytes(real), 400)
    first_of: dict[int, int] = {}
    for pos, length in tokens[256:]:  # past the byte tokens: two distinct texts of one length
        if length in first_of:
            src = first_of[length]
            real[pos + 8: pos + 8 + length] = real[src + 8: src + 8 + length]
            break
        first_of[length] = pos
    path = tmp_path / "vocab_token_twice.gguf"
    path.write_bytes(bytes(real))
    assert _load_all({"twice": str(path)}) == {"twice": "ModelLoadError"}
