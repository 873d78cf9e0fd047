"""The deterministic mode (EngineOptions(deterministic=True)): an answer depends only on the model,
the prompt and the sampling options.

Each test compares a greedy (or seeded) answer computed alone on an idle engine with the same
request in another situation: amid other requests in one batch, after a cached prefix, as one of
n forks. In the default mode these may differ on some CPUs (the kernels' summation order follows
the batch shape); here they must be equal on every CPU, by construction.
"""

from __future__ import annotations

import threading

import pytest

from mr import _native
from mr.engine import LLM, EngineOptions, SamplingOptions
from mr.errors import InvalidArgumentError

GREEDY = SamplingOptions(temperature=0)
SEEDED = SamplingOptions(temperature=0.9, seed=1234)
PREFIX = " ".join(f"Fact {i}: the number {i} squared is {i * i}." for i in range(60))
QUESTION = PREFIX + " Fact 60: the number 60 squared is"
OTHERS = ["Write a long story about a dragon who", "List the planets of the solar system:",
          "def fibonacci(n):", PREFIX + " Now count backwards from 100:"]
TOKENS = 24


def _options(**kw: object) -> EngineOptions:
    return EngineOptions(n_ctx=8192, n_slots=4, deterministic=True, **kw)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def det_llm(smollm2_path):
    with LLM(smollm2_path, _options()) as llm:
        gpu_build = any(name in _native.system_info() for name in ("CUDA", "METAL", "Metal"))
        if gpu_build and not llm.deterministic:  # llama.cpp hands steps to the GPU: no promise there
            pytest.skip("the deterministic mode holds only where the CPU computes every step")
        yield llm


def _alone(smollm2_path, prompt: str, sampling: SamplingOptions) -> list[int]:
    with LLM(smollm2_path, _options()) as llm:
        stream = llm.generate(prompt, sampling, max_tokens=TOKENS, ignore_eos=True)
        stream.text()
        return list(stream.tokens)


@pytest.fixture(scope="module")
def alone_greedy(smollm2_path, det_llm) -> list[int]:
    return _alone(smollm2_path, QUESTION, GREEDY)


def test_the_mode_is_on_and_implies_its_layout(det_llm) -> None:
    assert det_llm.deterministic and det_llm.flash_attn and not det_llm.repacked
    assert det_llm.request_context == det_llm.n_ctx // 4  # one KV stream per slot


def test_flash_attention_off_is_refused_in_the_mode() -> None:
    with pytest.raises(InvalidArgumentError, match="deterministic"):
        _options(flash_attn="off").validate()


@pytest.mark.parametrize("sampling", [GREEDY, SEEDED], ids=["greedy", "seeded"])
def test_same_answer_alone_and_amid_other_requests(smollm2_path, det_llm, sampling) -> None:
    alone = _alone(smollm2_path, QUESTION, sampling)
    # three others decode beside it, a fourth fills its long prompt in the same steps
    others = [det_llm.generate(p, SamplingOptions(temperature=0.7, seed=i), max_tokens=40, ignore_eos=True)
              for i, p in enumerate(OTHERS[:3])]
    busy = det_llm.generate(QUESTION, sampling, max_tokens=TOKENS, ignore_eos=True)
    late = det_llm.generate(OTHERS[3], GREEDY, max_tokens=8)
    busy.text()
    for s in [*others, late]:
        s.text()
    assert list(busy.tokens) == alone


def test_same_answer_cold_and_after_a_cached_prefix(det_llm, alone_greedy) -> None:
    det_llm.generate(PREFIX + " Fact 61: the number 61 squared is", GREEDY, max_tokens=4).text()
    warm = det_llm.generate(QUESTION, GREEDY, max_tokens=TOKENS, ignore_eos=True)
    warm.text()
    assert warm.n_cached >= 500  # the prefix came from the cache
    assert list(warm.tokens) == alone_greedy


def test_same_answer_for_each_of_n_forks(det_llm, alone_greedy) -> None:
    forks = [det_llm.generate(QUESTION, GREEDY, max_tokens=TOKENS, ignore_eos=True) for _ in range(3)]
    for fork in forks:
        fork.text()
    assert sorted(f.n_cached for f in forks)[1:] != [0, 0]  # later forks share the first's prompt
    assert all(list(f.tokens) == alone_greedy for f in forks)


def test_same_answer_with_a_small_prefill_chunk(smollm2_path, det_llm, alone_greedy) -> None:
    with LLM(smollm2_path, _options(prefill_chunk=37)) as llm:
        stream = llm.generate(QUESTION, GREEDY, max_tokens=TOKENS, ignore_eos=True)
        stream.text()
        assert list(stream.tokens) == alone_greedy


def test_same_answer_from_threads_at_once(det_llm, alone_greedy) -> None:
    results: list[list[int]] = []

    def ask() -> None:
        stream = det_llm.generate(QUESTION, GREEDY, max_tokens=TOKENS, ignore_eos=True)
        stream.text()
        results.append(list(stream.tokens))

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [alone_greedy] * 4
