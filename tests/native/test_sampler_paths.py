"""The sampler's fast paths (argmax for greedy, one-pass top-k) pick exactly what llama.cpp's full
sampler chain picks. A logit bias of 0.0 changes no logit but forces the full chain, so each pair
below differs only in the path taken."""

from __future__ import annotations

import pytest

from mr.engine import SamplingOptions

PROMPT = "Once upon a time, in a small village by the sea,"


def tokens(llm, sampling: SamplingOptions) -> list[int]:
    stream = llm.generate(PROMPT, sampling, max_tokens=24, ignore_eos=True)
    stream.text()
    return stream.tokens


@pytest.mark.parametrize("sampling", [
    SamplingOptions(temperature=0),
    SamplingOptions(temperature=0.8, top_k=40, seed=42),
    SamplingOptions(temperature=1.2, top_k=200, top_p=0.9, min_p=0.0, seed=7),
    SamplingOptions(temperature=0.7, top_k=5, top_p=1.0, min_p=0.1, seed=123),
], ids=["greedy", "default-chain", "wide-top-k", "min-p"])
def test_fast_path_equals_the_full_chain(smollm2, sampling: SamplingOptions) -> None:
    forced_chain = SamplingOptions(**{**{f: getattr(sampling, f) for f in sampling.__struct_fields__},
                                      "logit_bias": {0: 0.0}})
    fast = tokens(smollm2, sampling)
    assert len(fast) == 24
    assert fast == tokens(smollm2, forced_chain)


def test_sampled_runs_differ_by_seed(smollm2) -> None:
    """The top-k path really samples: two seeds at a high temperature give different text."""
    a = tokens(smollm2, SamplingOptions(temperature=1.5, top_k=100, min_p=0.0, seed=1))
    b = tokens(smollm2, SamplingOptions(temperature=1.5, top_k=100, min_p=0.0, seed=2))
    assert a != b
