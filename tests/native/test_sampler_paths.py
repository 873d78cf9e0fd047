"""The sampler's fast paths (argmax for greedy, one-pass top-k) pick exactly what llama.cpp's full
sampler chain picks. A logit bias of 0.0 changes no logit but forces the full chain, so each pair
below differs only in the path taken.

An engine of its own with one slot: its cache then always holds this prompt's prefix, so both runs
of a pair see bit-identical logits (what other requests leave in a shared cache moves the float
sums a little, and a sampled token near a boundary can follow)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mr.engine import LLM, EngineOptions, SamplingOptions

PROMPT = "Once upon a time, in a small village by the sea,"


@pytest.fixture(scope="module")
def llm(smollm2_path: Path) -> Iterator[LLM]:
    with LLM(smollm2_path, EngineOptions(n_ctx=256, n_slots=1)) as engine:
        tokens(engine, SamplingOptions(temperature=0))  # the prompt's prefix is cached from here on
        yield engine


def tokens(llm: LLM, sampling: SamplingOptions) -> list[int]:
    stream = llm.generate(PROMPT, sampling, max_tokens=24, ignore_eos=True)
    stream.text()
    return stream.tokens


@pytest.mark.parametrize("sampling", [
    SamplingOptions(temperature=0),
    SamplingOptions(temperature=0.8, top_k=40, seed=42),
    SamplingOptions(temperature=1.2, top_k=200, top_p=0.9, min_p=0.0, seed=7),
    SamplingOptions(temperature=0.7, top_k=5, top_p=1.0, min_p=0.1, seed=123),
], ids=["greedy", "default-chain", "wide-top-k", "min-p"])
def test_fast_path_equals_the_full_chain(llm: LLM, sampling: SamplingOptions) -> None:
    forced_chain = SamplingOptions(**{**{f: getattr(sampling, f) for f in sampling.__struct_fields__},
                                      "logit_bias": {0: 0.0}})
    fast = tokens(llm, sampling)
    assert len(fast) == 24
    assert fast == tokens(llm, forced_chain)


def test_sampled_runs_differ_by_seed(llm: LLM) -> None:
    """The top-k path really samples: two seeds at a high temperature give different text."""
    a = tokens(llm, SamplingOptions(temperature=1.5, top_k=100, min_p=0.0, seed=1))
    b = tokens(llm, SamplingOptions(temperature=1.5, top_k=100, min_p=0.0, seed=2))
    assert a != b
