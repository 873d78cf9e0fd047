"""The last prompt token, whose logits start the answer: a cached prompt starts it as a cold one does
(bit for bit in the deterministic mode; with the default kernels up to float rounding, since a
kernel's summation order may follow the step's column count), and a short prompt on plain CPU
weights computes it in the prompt's own step (Engine::prompt_chunk in cpp/src/engine.cpp says why
only there)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mr.engine import LLM, EngineOptions, SamplingOptions
from support.models import answer_start

GREEDY = SamplingOptions(temperature=0)
FEW_COLUMNS = 64  # the engine's kFewColumns: from this many tokens a prompt's step is tiled differently
TEXT = " ".join(f"Fact {i}: the number {i} squared is {i * i}." for i in range(40))
OPTIONS = {
    "one chunk": EngineOptions(n_ctx=2048, n_slots=1),
    "chunks of 7": EngineOptions(n_ctx=2048, n_slots=1, prefill_chunk=7),
    "ubatches of 8": EngineOptions(n_ctx=2048, n_slots=1, n_batch=64, n_ubatch=8),
    "deterministic, chunks of 7": EngineOptions(n_ctx=2048, n_slots=1, prefill_chunk=7, deterministic=True),
}


def _plain_cpu(llm: LLM) -> bool:
    return set(llm.model.weight_buffers) <= {"CPU", "CPU_Mapped"}


@pytest.fixture(scope="module", params=list(OPTIONS))
def llm(request: pytest.FixtureRequest, smollm2_path: Path) -> Iterator[LLM]:
    with LLM(smollm2_path, OPTIONS[request.param]) as llm:
        yield llm


def _cold(llm: LLM, ids: list[int], n: int) -> tuple[list[tuple[int, float]], int]:
    llm.generate(ids[1:4], GREEDY, max_tokens=1).text()  # the one slot's cache now holds another prompt
    top, cached, steps = answer_start(llm, ids[:n])
    assert cached == 0
    return top, steps


@pytest.mark.parametrize("n", [2, 3, 16, 40, FEW_COLUMNS - 1, FEW_COLUMNS, 100])
def test_a_cached_prompt_starts_its_answer_exactly_as_a_cold_one(llm: LLM, n: int) -> None:
    ids = llm.model.tokenize(TEXT, True, False)
    cold, _ = _cold(llm, ids, n)
    warm, cached, _ = answer_start(llm, ids[:n])
    assert cached > 0 or n <= 2
    if llm.deterministic:
        assert warm == cold  # bit for bit: the same kernels in the same order
        return
    assert [t for t, _ in warm][:1] == [t for t, _ in cold][:1] or abs(cold[0][1] - cold[1][1]) < 1e-3
    for (_, w), (_, c) in zip(warm, cold, strict=True):
        assert abs(w - c) < 1e-3  # the same computation, summed in an order of its own


def test_a_short_prompt_answers_in_its_own_step(smollm2_path: Path) -> None:
    with LLM(smollm2_path, OPTIONS["one chunk"]) as llm:
        ids = llm.model.tokenize(TEXT, True, False)
        short = 1 if _plain_cpu(llm) else 2  # elsewhere the last token keeps a step of its own
        assert [_cold(llm, ids, n)[1] for n in (5, 40, FEW_COLUMNS - 1)] == [short] * 3
        assert [_cold(llm, ids, n)[1] for n in (FEW_COLUMNS, 200)] == [2, 2]
