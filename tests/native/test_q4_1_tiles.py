"""Q4_1 matrix products (vendor/patches/0003): ggml's CPU mul_mat against a NumPy reference.

The patch gives Q4_1 weights times Q8_1 activations tiles of up to 4 rows by 4 columns, used from
two columns on (batched decode steps and prompts), in place of ggml's one vec_dot per row and
column; one column (n = 1 below) is still ggml's vec_dot, checked the same way. The
reference here is independent of ggml: the weights are quantized and dequantized in NumPy, and
the activations are rounded to Q8_1 the way ggml rounds them, so only float summation order is
left between the two. Ragged shapes cover every tile size and the rows and columns left over.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mr import _native

GGML_TYPE_Q4_1 = 3
BLOCK = 32
Q4_1 = np.dtype([("d", "<f2"), ("m", "<f2"), ("qs", "u1", 16)])  # ggml's block_q4_1, 20 bytes
# The reference rounds the activations as ggml's x86 AVX2 code does (127 / amax, ties to even);
# ggml's generic code rounds ties away from zero, which would move a rare quant by one.
pytestmark = pytest.mark.skipif("AVX2 = 1" not in _native.system_info(),
                                reason="the NumPy reference follows ggml's x86 AVX2 Q8_1 rounding")
PATCH = Path(__file__).resolve().parents[2] / "vendor" / "patches" / "0003-q4-1-tiles.patch"
SGEMM = PATCH.parents[1] / "llama.cpp" / "ggml" / "src" / "ggml-cpu" / "llamafile" / "sgemm.cpp"


def quantize_q4_1(w: np.ndarray) -> tuple[bytes, np.ndarray]:
    """(ggml's block_q4_1 bytes, the values they stand for) for a (rows, k) float matrix."""
    rows, k = w.shape
    blocks = w.reshape(rows, k // BLOCK, BLOCK).astype(np.float32)
    lo, hi = blocks.min(axis=2), blocks.max(axis=2)
    d = ((hi - lo) / 15).astype(np.float16)
    m = lo.astype(np.float16)
    scale = np.where(d == 0, 1, d).astype(np.float32)[..., None]
    q = np.clip(np.rint((blocks - m.astype(np.float32)[..., None]) / scale), 0, 15).astype(np.uint8)
    packed = q[..., :16] | (q[..., 16:] << 4)  # element j in the low nibble, j + 16 in the high one
    raw = np.empty((rows, k // BLOCK), dtype=Q4_1)
    raw["d"], raw["m"], raw["qs"] = d, m, packed
    values = d.astype(np.float64)[..., None] * q + m.astype(np.float64)[..., None]
    return raw.tobytes(), values.reshape(rows, k)


def as_q8_1(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ggml's Q8_1 rounding of (n, k) activations, step by step in float32 as ggml's x86 code does it.

    Returns (n, blocks, 32) values quants * fp16(d), and (n, blocks) s = fp16(d * sum(quants))."""
    n, k = x.shape
    blocks = x.reshape(n, k // BLOCK, BLOCK).astype(np.float32)
    amax = np.abs(blocks).max(axis=2)
    d = amax / np.float32(127)
    inv = np.where(amax == 0, np.float32(0), np.float32(127) / np.where(amax == 0, np.float32(1), amax))
    q = np.rint(blocks * inv.astype(np.float32)[..., None])  # half to even, as _MM_ROUND_NEAREST
    values = q.astype(np.float64) * d.astype(np.float16).astype(np.float64)[..., None]
    sums = (d * q.sum(axis=2, dtype=np.float32)).astype(np.float16).astype(np.float64)
    return values, sums


def reference(w_raw: bytes, w_values: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(x * w^T as the Q4_1 x Q8_1 kernels define it, a magnitude to judge errors by).

    Per block: sum((d*q) * y) + m * s, with y and s as ggml rounds them."""
    rows = w_values.shape[0]
    blocks = np.frombuffer(w_raw, dtype=Q4_1).reshape(rows, -1)
    m = blocks["m"].astype(np.float64)
    scaled = (w_values - np.repeat(m, BLOCK, axis=1)).reshape(rows, -1, BLOCK)  # d * q
    y, s = as_q8_1(x)
    dots = np.einsum("rbe,nbe->nr", scaled, y) + s @ m.T
    magnitude = np.einsum("rbe,nbe->nr", np.abs(scaled), np.abs(y)) + np.abs(s) @ np.abs(m).T
    return dots, magnitude


def product(rows: int, k: int, n: int, threads: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    w = rng.normal(0.1, 1.0, (rows, k)).astype(np.float32)  # an offset, so the mins matter
    x = rng.normal(0, 1.0, (n, k)).astype(np.float32)
    raw, values = quantize_q4_1(w)
    got = _native.testing.cpu_mul_mat(GGML_TYPE_Q4_1, raw, rows, x, threads)
    want, magnitude = reference(raw, values, x)
    return got, want, magnitude


def test_the_fetched_tree_carries_the_q4_1_tiles() -> None:
    if not SGEMM.exists():
        pytest.skip("vendor/llama.cpp is not fetched")
    source = SGEMM.read_text()
    assert "class tinyBLAS_Q4_1_AVX" in source, f"{PATCH.name} is not applied to {SGEMM}"
    assert "Atype == GGML_TYPE_Q4_1 && Btype == GGML_TYPE_Q8_1" in source


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 7, 8, 9, 16])
@pytest.mark.parametrize("rows", [1, 3, 4, 6, 13])
def test_every_tile_shape_matches_the_reference(rows: int, n: int) -> None:
    got, want, magnitude = product(rows, 96, n, threads=2, seed=rows * 100 + n)
    assert got.shape == (n, rows)
    np.testing.assert_array_less(np.abs(got - want), 1e-5 * magnitude + 1e-6)


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_a_layer_sized_product_matches_on_any_thread_count(threads: int) -> None:
    """SmolLM2's shapes (576 in, 1536 out) at a decode step of 8 and a prompt of 37."""
    for n in (8, 37):
        got, want, magnitude = product(1536, 576, n, threads, seed=threads * 10 + n)
        np.testing.assert_array_less(np.abs(got - want), 1e-5 * magnitude + 1e-6)


def test_the_mins_reach_the_result() -> None:
    """Weights that are a constant per block are all min (q = 0): only the m*s term carries them."""
    rows, k, n = 5, 64, 3
    w = np.repeat(np.arange(1, rows * k // BLOCK + 1, dtype=np.float32).reshape(rows, -1), BLOCK, axis=1)
    x = np.random.default_rng(7).normal(size=(n, k)).astype(np.float32)
    raw, values = quantize_q4_1(w)
    got = _native.testing.cpu_mul_mat(GGML_TYPE_Q4_1, raw, rows, x, 2)
    want, magnitude = reference(raw, values, x)
    assert np.abs(want).max() > 1
    np.testing.assert_array_less(np.abs(got - want), 1e-5 * magnitude + 1e-6)


def test_bad_shapes_are_clear_errors() -> None:
    from mr.errors import InvalidArgumentError

    x = np.zeros((2, 64), dtype=np.float32)
    with pytest.raises(InvalidArgumentError, match="need"):
        _native.testing.cpu_mul_mat(GGML_TYPE_Q4_1, b"\0" * 10, 1, x)
    with pytest.raises(InvalidArgumentError, match="blocks"):
        _native.testing.cpu_mul_mat(GGML_TYPE_Q4_1, b"", 1, np.zeros((2, 40), dtype=np.float32))
    with pytest.raises(InvalidArgumentError, match="unknown ggml type"):
        _native.testing.cpu_mul_mat(999, b"", 1, x)
