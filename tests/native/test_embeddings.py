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


def test_cancel_ends_a_running_embedding_and_the_embedder_still_works(smollm2) -> None:
    import threading
    import time

    from mr.errors import CutShortError

    before = smollm2.embed(["hello world"])
    outcome: list[BaseException | None] = []

    def big() -> None:
        try:
            smollm2.embed(["word " * 900] * 200)  # minutes of work on a small CPU, under the text limit
            outcome.append(None)
        except BaseException as exc:  # the test inspects it
            outcome.append(exc)

    worker = threading.Thread(target=big)
    worker.start()
    time.sleep(1.0)  # well inside its first batches
    started = time.monotonic()
    smollm2.cancel_embeddings("a test said so")
    worker.join(timeout=30)
    assert not worker.is_alive() and time.monotonic() - started < 5
    assert isinstance(outcome[0], CutShortError) and "a test said so" in str(outcome[0])
    np.testing.assert_allclose(smollm2.embed(["hello world"]), before, atol=1e-5)  # usable again


def test_a_cancel_while_the_inputs_are_tokenized_ends_the_call(smollm2) -> None:
    """A cancel() that lands before the compute starts (while embed() tokenizes its inputs) ends
    the call too; it used to be lost, and the embedding ran to its end (minutes here)."""
    import threading
    import time

    from mr.errors import CutShortError

    # The most a request may hold (1 Mi characters), of the text slowest to tokenize (emoji: about
    # 1 s per Mi on a 2-core EPYC), each cut to the context: a second of tokenizing, then minutes
    # of compute.
    emoji = "".join(chr(0x1F300 + i % 0x150) for i in range(5000))
    texts = [emoji] * 200
    outcome: list[BaseException | None] = []

    def big() -> None:
        try:
            smollm2.embed(texts, truncate=True)
            outcome.append(None)
        except BaseException as exc:  # the test inspects it
            outcome.append(exc)

    worker = threading.Thread(target=big)
    worker.start()
    time.sleep(0.3)  # inside the tokenizing
    smollm2.cancel_embeddings("a test said so")
    worker.join(timeout=30)
    assert not worker.is_alive()
    assert isinstance(outcome[0], CutShortError) and "a test said so" in str(outcome[0])
