"""The deterministic mode's kernels (vendor/patches/0006): one column and many agree bit for bit.

A decode step computes a sequence's token as one column of each matrix product; a prompt chunk or
a busy step computes it among many. ggml's default CPU kernels pick their path by the number of
columns (tinyBLAS and mr's Q4_1 tiles from two columns on, ARM's two-row mmla for even counts),
and each path sums in its own order, so a token's logits change with the batch. The reference
kernels (`reference=True`, what an engine in the deterministic mode computes with) take one
vec_dot per output element whatever the shape. Attention likewise: one query row over the whole KV
range in cell order, never split by threads (a long range is split across threads by default).

These tests assert only equalities that hold by construction, on every CPU; the default kernels are
compared with a tolerance.
"""

from __future__ import annotations

import numpy as np
import pytest

from mr import _native

# ggml_type numbers (ggml.h)
TYPES = {"F16": 1, "Q4_1": 3, "Q8_0": 8, "Q4_K": 12, "Q5_K": 13, "Q6_K": 14, "BF16": 30}
K = 512  # a whole number of K-quant super-blocks (256)
ROWS = 72
COLUMNS = (1, 2, 3, 4, 7, 8, 16, 33)


def _weights(type_name: str, rng: np.random.Generator) -> bytes:
    w = rng.standard_normal((ROWS, K)).astype(np.float32) * 0.05
    return _native.testing.cpu_quantize(TYPES[type_name], w)


@pytest.mark.parametrize("type_name", list(TYPES))
@pytest.mark.parametrize("threads", [1, 2])
def test_one_column_equals_every_column_of_a_batch(type_name: str, threads: int) -> None:
    rng = np.random.default_rng(TYPES[type_name])
    weights = _weights(type_name, rng)
    x = rng.standard_normal((max(COLUMNS), K)).astype(np.float32)
    alone = np.vstack([_native.testing.cpu_mul_mat(TYPES[type_name], weights, ROWS, x[i:i + 1], threads,
                                           reference=True) for i in range(len(x))])
    for n in COLUMNS:
        batch = _native.testing.cpu_mul_mat(TYPES[type_name], weights, ROWS, x[:n], threads, reference=True)
        assert np.array_equal(batch, alone[:n]), f"{type_name}: {n} columns differ from one at a time"
    default = _native.testing.cpu_mul_mat(TYPES[type_name], weights, ROWS, x, threads)
    np.testing.assert_allclose(default, alone, rtol=1e-3, atol=1e-3)  # the same product, other sums


def test_quantize_round_trips_through_the_product() -> None:
    # cpu_quantize is ggml's own quantizer: Q8_0 of an identity-like matrix reproduces x closely
    rng = np.random.default_rng(7)
    x = rng.standard_normal((3, K)).astype(np.float32)
    w = np.zeros((ROWS, K), dtype=np.float32)
    w[np.arange(ROWS), np.arange(ROWS)] = 1.0
    weights = _native.testing.cpu_quantize(TYPES["Q8_0"], w)
    out = _native.testing.cpu_mul_mat(TYPES["Q8_0"], weights, ROWS, x, reference=True)
    np.testing.assert_allclose(out, x[:, :ROWS], rtol=0.02, atol=0.02)


def _attention_inputs(rng: np.random.Generator, n_q: int, n_kv: int, open_cells: np.ndarray):
    d, heads, kv_heads = 64, 6, 2
    q = rng.standard_normal((heads, n_q, d)).astype(np.float32)
    k = rng.standard_normal((kv_heads, n_kv, d)).astype(np.float32)
    v = rng.standard_normal((kv_heads, n_kv, d)).astype(np.float32)
    mask = np.full((n_q, n_kv), -np.inf, dtype=np.float32)
    mask[:, open_cells] = 0.0
    return q, k, v, mask


@pytest.mark.parametrize("threads", [1, 2])
def test_attention_row_is_the_same_alone_amid_others_and_in_a_longer_cache(threads: int) -> None:
    rng = np.random.default_rng(3)
    n_kv = 1024  # long enough for the default kernels' KV split across threads
    cells = np.sort(rng.choice(n_kv, 700, replace=False))  # one sequence's cells, in order
    q, k, v, mask = _attention_inputs(rng, 9, n_kv, cells)
    batch = _native.testing.cpu_flash_attn(q, k, v, mask, threads, reference=True)
    for row in (0, 4, 8):
        alone = _native.testing.cpu_flash_attn(q[:, row:row + 1], k, v, mask[row:row + 1], threads,
                                               reference=True)
        assert np.array_equal(alone[0], batch[row])
    # the same cells in the same order, with more hidden cells after them (a longer used range)
    pad = 512
    k2 = np.concatenate([k, rng.standard_normal((2, pad, 64)).astype(np.float32)], axis=1)
    v2 = np.concatenate([v, rng.standard_normal((2, pad, 64)).astype(np.float32)], axis=1)
    mask2 = np.concatenate([mask, np.full((9, pad), -np.inf, dtype=np.float32)], axis=1)
    longer = _native.testing.cpu_flash_attn(q, k2, v2, mask2, threads, reference=True)
    assert np.array_equal(longer, batch)
    one_thread = _native.testing.cpu_flash_attn(q, k, v, mask, 1, reference=True)
    assert np.array_equal(one_thread, batch)


def test_quantize_refuses_a_type_it_cannot_make() -> None:
    from mr.errors import InvalidArgumentError

    with pytest.raises(InvalidArgumentError, match="does not make"):
        _native.testing.cpu_quantize(9, np.zeros((1, 32), dtype=np.float32))  # Q8_1: ggml would abort
