"""The sampler's fast paths (argmax for greedy, one-pass top-k) pick exactly what llama.cpp's full
sampler chain picks. A logit bias of 0.0 changes no logit but forces the full chain, so each pair
below differs only in the path taken.

An engine of its own with one slot: its cache then always holds this prompt's prefix, so both runs
of a pair see bit-identical logits (what other requests leave in a shared cache moves the float
sums a little, and a sampled token near a boundary can follow)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from mr._native.testing import first_argmax

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


def reference_first_argmax(values: np.ndarray) -> int:
    """std::max_element's rule: the first value that no later value exceeds; NaNs never win."""
    best = 0
    for i, v in enumerate(values.tolist()):
        if v > values[best]:
            best = i
    return best


@pytest.mark.parametrize("n", [1, 7, 16, 17, 33, 1000, 49152, 49157])
def test_first_argmax_picks_the_first_largest(n: int) -> None:
    """Greedy's argmax (16 vector lanes) picks the first of tied maxima, wherever they fall."""
    rng = np.random.default_rng(n)
    for _ in range(25):
        values = rng.standard_normal(n).astype(np.float32)
        top = rng.integers(0, n, size=min(n, 4))
        values[top] = values.max() + 1.0  # ties between lanes, and within one
        assert first_argmax(values) == int(np.argmax(values)) == min(top)


@pytest.mark.parametrize("n", [5, 40, 49152])
def test_first_argmax_skips_nans_and_handles_infinities(n: int) -> None:
    rng = np.random.default_rng(n)
    for _ in range(25):
        values = rng.standard_normal(n).astype(np.float32)
        values[rng.integers(0, n, size=max(1, n // 4))] = np.nan
        values[rng.integers(0, n, size=2)] = -np.inf
        assert first_argmax(values) == reference_first_argmax(values)
    assert first_argmax(np.full(n, -np.inf, dtype=np.float32)) == 0
    nan_then_inf = np.full(n, -np.inf, dtype=np.float32)
    nan_then_inf[1:n // 2] = np.nan
    assert first_argmax(nan_then_inf) == 0
    nan_first = np.ones(n, dtype=np.float32)
    nan_first[0] = np.nan
    assert first_argmax(nan_first) == 0  # as std::max_element: nothing compares larger than it
    peak_in_a_nan_lane = np.zeros(n, dtype=np.float32)
    peak_in_a_nan_lane[min(3, n - 1)] = np.nan
    peak_in_a_nan_lane[n - 1] = 5.0
    assert first_argmax(peak_in_a_nan_lane) == n - 1


def test_first_argmax_rejects_an_empty_array() -> None:
    with pytest.raises(ValueError):
        first_argmax(np.zeros(0, dtype=np.float32))
