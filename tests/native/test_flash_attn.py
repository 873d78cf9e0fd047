"""ggml's CPU flash attention (every decode step's attention) against a NumPy reference.

`vendor/patches/0005` gives f16 rows shorter than one SIMD step (a 64-wide head on a CPU with
AVX512-FP16, where a step is 128 values) a vector loop of their own; head sizes here cover that
loop, its scalar tail, and the full-step path. Masks hide cells in runs and in strides, as a KV
cache shared by several sequences does (`vendor/patches/0004` skips those), and whole tiles of a
many-row step (`vendor/patches/0012`)."""

from __future__ import annotations

import numpy as np
import pytest
from mr._native.testing import cpu_flash_attn


def reference(q: np.ndarray, k: np.ndarray, v: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Softmax attention in float64 over K and V rounded to f16 as ggml stores them: (n_q, heads, d)."""
    n_head, _, d = q.shape
    group = n_head // k.shape[0]
    k16 = k.astype(np.float16).astype(np.float64)
    v16 = v.astype(np.float16).astype(np.float64)
    out = np.empty((q.shape[1], n_head, d))
    for h in range(n_head):
        scores = q[h].astype(np.float64) @ k16[h // group].T / np.sqrt(d) + mask
        weights = np.exp(scores - scores.max(axis=1, keepdims=True))
        out[:, h] = (weights / weights.sum(axis=1, keepdims=True)) @ v16[h // group]
    return out


def mask_for(rng: np.random.Generator, n_q: int, n_kv: int) -> np.ndarray:
    mask = np.zeros((n_q, n_kv), dtype=np.float32)
    mask[:, rng.integers(0, n_kv, size=n_kv // 3)] = -np.inf  # scattered
    mask[:, n_kv // 4 : n_kv // 2] = -np.inf  # a run
    mask[:, 1::8] = -np.inf  # a stride, as decoded tokens of other sequences
    mask[:, 0] = 0.0  # every row keeps a cell open
    return mask


@pytest.mark.parametrize("d", [20, 40, 64, 128])
@pytest.mark.parametrize(("n_q", "threads"), [(1, 1), (8, 2)])
def test_flash_attention_matches_softmax_attention(d: int, n_q: int, threads: int) -> None:
    rng = np.random.default_rng(d * 100 + n_q)
    n_head, n_head_kv, n_kv = 9, 3, 300  # SmolLM2's grouping: three query heads per KV head
    q = rng.standard_normal((n_head, n_q, d)).astype(np.float32)
    k = rng.standard_normal((n_head_kv, n_kv, d)).astype(np.float32)
    v = rng.standard_normal((n_head_kv, n_kv, d)).astype(np.float32)
    mask = mask_for(rng, n_q, n_kv)
    got = cpu_flash_attn(q, k, v, mask, threads=threads)
    assert got.shape == (n_q, n_head, d)
    # ggml accumulates V in f16 (and rounds Q to f16 for the dot products): a few 1e-3.
    np.testing.assert_allclose(got, reference(q, k, v, mask), rtol=0, atol=2e-2)


@pytest.mark.parametrize("threads", [1, 2])
def test_tiles_hidden_from_every_row_are_skipped_without_changing_the_result(threads: int) -> None:
    # A step of two sequences' drafts (65 rows each, 64-row tiles: one tile holds both) in a cache
    # that eight sequences share, 128 cells each: most 64-cell tiles are hidden from every row of
    # a query tile and skipped (`vendor/patches/0012` decides that before converting the mask).
    rng = np.random.default_rng(threads)
    n_head, n_head_kv, d, n_q, n_kv = 9, 3, 64, 130, 8 * 128
    q = rng.standard_normal((n_head, n_q, d)).astype(np.float32)
    k = rng.standard_normal((n_head_kv, n_kv, d)).astype(np.float32)
    v = rng.standard_normal((n_head_kv, n_kv, d)).astype(np.float32)
    mask = np.full((n_q, n_kv), -np.inf, dtype=np.float32)
    for row in range(n_q):
        seq = row // 65  # rows 0-64 are sequence 0's, 65-129 sequence 1's: cells 0-127 and 128-255
        mask[row, seq * 128 : seq * 128 + 63 + row % 65] = 0.0  # its prompt, then its draft so far
    got = cpu_flash_attn(q, k, v, mask, threads=threads)
    np.testing.assert_allclose(got, reference(q, k, v, mask), rtol=0, atol=2e-2)


def test_flash_attention_rejects_mismatched_shapes() -> None:
    q = np.zeros((4, 1, 64), dtype=np.float32)
    kv = np.zeros((2, 10, 32), dtype=np.float32)
    with pytest.raises(ValueError, match="k and v"):
        cpu_flash_attn(q, kv, kv, np.zeros((1, 10), dtype=np.float32))
