"""Embeddings: a context in embeddings mode, a batch of texts -> one float32 matrix."""

from __future__ import annotations

import numpy as np
import pytest

from mr.errors import InvalidArgumentError


def test_shape_norm_determinism_and_similarity(smollm2) -> None:
    texts = ["The cat sat on the mat.", "Quarterly revenue grew by eight percent.", "The cat sat on the mat."]
    vectors = smollm2.embed(texts)
    assert vectors.shape == (3, smollm2.model.n_embd)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(vectors[0], vectors[2], atol=1e-5)
    assert float(vectors[0] @ vectors[1]) < 0.99


def test_unnormalised_and_batch_independent(smollm2) -> None:
    raw = smollm2.embed(["hello world"], normalize=False)
    assert abs(float(np.linalg.norm(raw[0])) - 1.0) > 1e-3
    alone = smollm2.embed(["hello world"])[0]
    many = smollm2.embed([f"filler sentence number {i}" for i in range(40)] + ["hello world"])
    np.testing.assert_allclose(many[-1], alone, atol=1e-4)


def test_bad_inputs(smollm2) -> None:
    with pytest.raises(InvalidArgumentError):
        smollm2.embed([])
    with pytest.raises(InvalidArgumentError):
        smollm2.embed("not a list")
    too_long = "word " * (smollm2.n_ctx + 10)
    with pytest.raises(InvalidArgumentError, match="context"):
        smollm2.embed([too_long])
    assert smollm2.embed([too_long], truncate=True).shape == (1, smollm2.model.n_embd)
