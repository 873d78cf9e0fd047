"""Rank pooling through the native embedder, on a tiny random-weights Qwen3 reranker."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mr import _native
from mr.errors import InvalidArgumentError
from support.models import write_tiny_reranker

DOCS = [f"document number {i} about {'cats' if i % 3 else 'the weather'}" for i in range(40)]


@pytest.fixture(scope="module")
def reranker(smollm2_path: Path, tmp_path_factory: pytest.TempPathFactory) -> _native.Model:
    return _native.Model(str(write_tiny_reranker(smollm2_path, tmp_path_factory.mktemp("rr") / "rr.gguf")))


def test_one_row_of_classifier_outputs_per_document(reranker: _native.Model) -> None:
    ranker = _native.Embedder(reranker, 512, 32, 0, True)
    assert ranker.rank and ranker.pooling_type == 4
    scores, n_tokens, n_batches = ranker.rerank("what are cats?", DOCS[:5])
    assert scores.shape == (5, 2)  # yes/no labels, softmaxed
    assert np.allclose(scores.sum(axis=1), 1.0, atol=1e-4)
    assert n_tokens > 5 and n_batches == 1
    assert len({round(float(s), 6) for s in scores[:, 0]}) > 1  # not one constant


def test_pairs_are_batched_and_batching_does_not_change_scores(reranker: _native.Model) -> None:
    ranker = _native.Embedder(reranker, 512, 32, 0, True)
    together, _n, n_batches = ranker.rerank("what are cats?", DOCS)
    assert n_batches == 2  # 40 pairs, 32 sequences per batch
    alone = np.array([ranker.rerank("what are cats?", [d])[0][0] for d in DOCS[:: 7]])
    assert np.allclose(together[:: 7], alone, atol=1e-3)


def test_modes_do_not_mix(reranker: _native.Model, smollm2_path: Path) -> None:
    ranker = _native.Embedder(reranker, 512, 4, 0, True)
    with pytest.raises(InvalidArgumentError, match="reranking mode"):
        ranker.embed(["x"])
    embedder = _native.Embedder(reranker, 512, 4, 0, False)
    assert embedder.embed(["x"])[0].shape == (1, 64)  # a reranker still embeds, mean-pooled
    with pytest.raises(InvalidArgumentError, match="not run in reranking mode"):
        embedder.rerank("q", ["d"])


def test_rerank_template_lays_out_the_pair(smollm2_path: Path, tmp_path: Path) -> None:
    plain = _native.Model(str(write_tiny_reranker(smollm2_path, tmp_path / "a.gguf")))
    template = "<|im_start|>Query: {query}\nDoc: {document}<|im_end|>"
    templated = _native.Model(str(write_tiny_reranker(smollm2_path, tmp_path / "b.gguf",
                                                      rerank_template=template)))
    a, n_a, _ = _native.Embedder(plain, 512, 4, 0, True).rerank("q", ["d"])
    b, n_b, _ = _native.Embedder(templated, 512, 4, 0, True).rerank("q", ["d"])
    assert n_b > n_a  # the template's words and special tokens were tokenized into the pair
    assert not np.allclose(a, b)
