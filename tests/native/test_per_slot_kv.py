"""One KV stream per slot (EngineOptions.per_slot_kv): each slot's share of the context, prefixes
copied between streams (idle caches that cost the running requests nothing: test_prefix_cache)."""

from __future__ import annotations

import threading

import pytest

from mr import config
from mr.engine import LLM, EngineOptions, SamplingOptions
from mr.errors import ContextLengthError

GREEDY = SamplingOptions(temperature=0)
PREFIX = " ".join(f"Fact {i}: the number {i} squared is {i * i}." for i in range(60))


def test_kv_cells_split_into_streams_of_256() -> None:
    assert config.kv_cells(4096) == 4096
    assert config.kv_cells(4096, 8) == 4096  # 512 each
    assert config.kv_cells(4096, 6) == 6 * 768  # 683 rounds up to 768 cells per slot
    assert config.kv_cells(100, 4) == 4 * 256


def test_each_request_gets_its_slots_share_of_the_context(tiny_gguf) -> None:
    prompt = list(range(100, 700))  # fits the whole context, not one slot's share
    with LLM(tiny_gguf, EngineOptions(n_ctx=1024, n_slots=2, per_slot_kv=True)) as llm:
        assert llm.n_ctx == 1024
        with pytest.raises(ContextLengthError) as info:
            llm.generate(prompt, max_tokens=4)
        assert info.value.n_ctx == 512
        stream = llm.generate(list(range(100, 400)), GREEDY, ignore_eos=True)  # until its share is full
        stream.text()
        assert stream.finish_reason == "length" and 500 <= stream.n_prompt + stream.n_generated <= 513
    with LLM(tiny_gguf, EngineOptions(n_ctx=1024, n_slots=2)) as shared:
        # one shared stream: a request may take the whole context, past a slot's half of it
        whole = shared.generate(prompt, GREEDY, max_tokens=4, ignore_eos=True)
        whole.text()
        assert whole.finish_reason == "length"
        assert (whole.n_prompt, whole.n_generated) == (600, 4)


def test_a_running_slots_prefix_is_copied_into_another_stream(smollm2_path) -> None:
    first = PREFIX + " Fact 61: the number 61 squared is"
    second = PREFIX + " Fact 60: the number 60 squared is"
    # The deterministic mode (per-slot streams besides) makes the answers comparable on every CPU.
    options = EngineOptions(n_ctx=4096, n_slots=2, per_slot_kv=True, deterministic=True)
    with LLM(smollm2_path, options) as cold_llm:
        cold = {p: cold_llm.generate(p, GREEDY, max_tokens=n, ignore_eos=True).text()
                for p, n in ((first, 64), (second, 8))}
    with LLM(smollm2_path, options) as llm:
        running = llm.generate(first, GREEDY, max_tokens=64, ignore_eos=True)
        started = threading.Event()
        texts: list[str] = []

        def consume() -> None:
            for piece in running:
                started.set()
                texts.append(piece)

        reader = threading.Thread(target=consume)
        reader.start()
        assert started.wait(60)  # slot 0 decodes: its prefix is in its stream, and it is busy
        warm = llm.generate(second, GREEDY, max_tokens=8, ignore_eos=True)
        assert len(texts) < 48  # slot 0 still runs: the second request takes slot 1's stream
        warm_text = warm.text()
        reader.join(60)
        assert warm.n_cached >= 500  # from slot 0's stream, copied
        assert warm_text == cold[second]
        assert "".join(texts) == cold[first]  # sharing its steps changed nothing either



def _busy(llm: LLM) -> list[int]:
    return [i for i, request in enumerate(llm.slot_requests()) if request]


def test_running_slots_stay_next_to_each_other(smollm2_path) -> None:
    # llama.cpp computes per-slot streams in one pass only for consecutive slots: a request that
    # continues slot 6's conversation while slot 3 runs goes next to slot 3, its prefix copied
    facts = [" ".join(f"Fact {k}.{i}: {k} times {i} is {k * i}." for i in range(6)) for k in range(8)]
    with LLM(smollm2_path, EngineOptions(n_ctx=4096, n_slots=8, per_slot_kv=True)) as llm:
        for fact in facts:  # one after another: request k leaves its cache in slot k
            llm.generate(fact, GREEDY, max_tokens=2).text()
        assert _busy(llm) == []
        first = llm.generate(facts[3] + " So 3 times 9 is", GREEDY, max_tokens=100, ignore_eos=True)
        next(iter(first))
        assert _busy(llm) == [3]  # its own cache: no other slot runs yet
        second = llm.generate(facts[6] + " So 6 times 9 is", GREEDY, max_tokens=100, ignore_eos=True)
        next(iter(second))
        busy = _busy(llm)
        first.text()
        second.text()
    assert busy in ([2, 3], [3, 4])  # not [3, 6]: two passes over the weights per step
    assert second.n_cached >= len(llm.tokenize(facts[6])) - 2  # slot 6's cells, copied
