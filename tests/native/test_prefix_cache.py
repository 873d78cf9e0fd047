"""Prefix KV-cache reuse, n > 1 forks, and logprobs."""

from __future__ import annotations

import math

from mr.engine import LLM, EngineOptions, SamplingOptions

GREEDY = SamplingOptions(temperature=0)
PREFIX = " ".join(f"Fact {i}: the number {i} squared is {i * i}." for i in range(60))


def test_shared_prefix_is_reused(smollm2_path) -> None:
    # Only the reuse is asserted here: with the default kernels the answer after a cached prefix
    # may differ from the cold one where the CPU's kernels sum in another order (a near-tie did
    # on an AVX2 EPYC). The deterministic mode promises the same answer (test_deterministic.py).
    question = PREFIX + " Fact 60: the number 60 squared is"
    with LLM(smollm2_path, EngineOptions(n_ctx=4096, n_slots=2)) as llm:
        llm.generate(PREFIX + " Fact 61: the number 61 squared is", GREEDY, max_tokens=4).text()
        before = llm.stats()
        warm = llm.generate(question, GREEDY, max_tokens=8)
        assert warm.text().strip()  # it answers
        assert warm.n_cached >= 500 and warm.usage.cached_tokens == warm.n_cached
        after = llm.stats()
        assert after["prefix_hits"] == before["prefix_hits"] + 1
        assert after["tokens_prompt"] - before["tokens_prompt"] == warm.n_prompt - warm.n_cached


def test_n_choices_prefill_the_prompt_once(smollm2_path) -> None:
    with LLM(smollm2_path, EngineOptions(n_ctx=4096, n_slots=4)) as llm:
        prompt = PREFIX + " Now a short poem about anything:"
        streams = [llm.generate(prompt, SamplingOptions(temperature=1.5, seed=i), max_tokens=16,
                                ignore_eos=True) for i in range(3)]
        texts = [s.text() for s in streams]
        n_prompt = streams[0].n_prompt
        assert n_prompt > 500
        assert llm.stats()["tokens_prompt"] <= n_prompt + 2  # once, plus one logits token per fork
        assert sorted(s.n_cached for s in streams) == [0, n_prompt - 1, n_prompt - 1]
        assert len(set(texts)) > 1  # forks sample independently


def test_kv_full_drops_idle_caches_before_running_requests(tiny_gguf) -> None:
    with LLM(tiny_gguf, EngineOptions(n_ctx=256, n_slots=4)) as llm:
        for word in ("alpha", "beta", "gamma"):  # three idle caches of ~100 cells each
            llm.generate(word, GREEDY, max_tokens=100, ignore_eos=True).text()
        stream = llm.generate("delta", GREEDY, max_tokens=200, ignore_eos=True)
        stream.text()
        assert (stream.n_generated, stream.finish_reason) == (200, "length")


def test_logprobs(smollm2) -> None:
    stream = smollm2.generate("The capital of France is", GREEDY, max_tokens=6, logprobs=3)
    stream.text()
    assert len(stream.logprobs) == stream.n_generated == 6
    for entry in stream.logprobs:
        assert entry.logprob <= 0
        assert entry.top[0].token == entry.token  # greedy picks the most likely
        values = [t.logprob for t in entry.top]
        assert values == sorted(values, reverse=True) and len(values) == 3
        assert sum(math.exp(v) for v in values) <= 1.0001
        assert entry.top[0].text == smollm2.model.token_to_piece(entry.token)
    plain = smollm2.generate("The capital of France is", GREEDY, max_tokens=6, logprobs=0)
    plain.text()
    assert all(not e.top for e in plain.logprobs) and len(plain.logprobs) == 6
    assert smollm2.generate("x", GREEDY, max_tokens=2).logprobs == []


def test_unrelated_request_does_not_overwrite_a_long_cache(smollm2_path) -> None:
    system = [{"role": "system", "content": PREFIX}]
    with LLM(smollm2_path, EngineOptions(n_ctx=4096, n_slots=4)) as llm:
        llm.chat([*system, {"role": "user", "content": "Hi"}], GREEDY, max_tokens=2).collect()
        # a different conversation shares only the template's first tokens with that cache
        llm.chat([{"role": "user", "content": "What is a cat?"}], GREEDY, max_tokens=2).collect()
        again = llm.chat([*system, {"role": "user", "content": "Hello"}], GREEDY, max_tokens=2)
        again.collect()
        assert again.usage.cached_tokens >= 1000


def _three_idle_caches_then_two_running(llm: LLM) -> tuple[int, int]:
    """Three idle caches of ~80 cells, then two requests at once; (cached tokens, prompt tokens)
    of a repeat of the oldest one."""
    for word in ("alpha", "beta", "gamma"):
        llm.generate(word * 20, GREEDY, max_tokens=60, ignore_eos=True).text()
    running = [llm.generate(w, GREEDY, max_tokens=30, ignore_eos=True) for w in ("delta", "epsilon")]
    for stream in running:
        stream.text()
    again = llm.generate("alpha" * 20, GREEDY, max_tokens=2)
    again.text()
    return again.n_cached, again.n_prompt


def _all_but_the_end(cached: int, n_prompt: int) -> bool:
    # the engine recomputes the last prompt token, and in a short prompt the one before it
    # (tests/native/test_first_token.py)
    return n_prompt - 2 <= cached < n_prompt and cached > 10


def test_idle_caches_are_trimmed_while_several_requests_run(tiny_gguf) -> None:
    # idle cells slow every running sequence's decode steps (EngineParams::idle_cache)
    with LLM(tiny_gguf, EngineOptions(n_ctx=2048, n_slots=6, idle_cache=0.1)) as llm:
        assert _three_idle_caches_then_two_running(llm)[0] == 0  # ~240 idle cells > 204: oldest gone
    with LLM(tiny_gguf, EngineOptions(n_ctx=2048, n_slots=6, idle_cache=1.0)) as llm:
        cached, n_prompt = _three_idle_caches_then_two_running(llm)
        assert _all_but_the_end(cached, n_prompt)


def test_per_slot_caches_keep_idle_caches_while_several_requests_run(tiny_gguf) -> None:
    # in separate streams idle cells cost the other sequences nothing: no trimming
    with LLM(tiny_gguf, EngineOptions(n_ctx=2048, n_slots=6, per_slot_kv=True)) as llm:
        cached, n_prompt = _three_idle_caches_then_two_running(llm)
        assert _all_but_the_end(cached, n_prompt)


def test_one_request_at_a_time_keeps_the_last_idle_cache_when_long(tiny_gguf) -> None:
    long = {w: " ".join(f"{w} {i}" for i in range(200)) for w in ("alpha", "beta", "gamma")}
    with LLM(tiny_gguf, EngineOptions(n_ctx=4096, n_slots=6, idle_cache=0.0)) as llm:
        for word in ("alpha", "beta", "gamma"):  # gamma's start drops alpha, keeps beta (the last)
            llm.generate(long[word], GREEDY, max_tokens=4).text()
        assert llm.generate("short", GREEDY, max_tokens=4).text() is not None  # keeps gamma
        repeats = {}
        for word in ("gamma", "beta"):
            again = llm.generate(long[word], GREEDY, max_tokens=2)
            again.text()
            repeats[word] = (again.n_cached, again.n_prompt)
    assert repeats["gamma"][0] == repeats["gamma"][1] - 1 > 512
    assert repeats["beta"][0] == 0


def test_a_short_idle_cache_goes_when_the_next_request_starts(tiny_gguf) -> None:
    # a short idle cache would widen every step of the next request (the shared cache's attention
    # spans all used cells) for longer than recomputing its prefix would take
    with LLM(tiny_gguf, EngineOptions(n_ctx=2048, n_slots=6, idle_cache=0.0)) as llm:
        llm.generate("alpha" * 20, GREEDY, max_tokens=60, ignore_eos=True).text()
        llm.generate("beta" * 20, GREEDY, max_tokens=60, ignore_eos=True).text()
        again = llm.generate("alpha" * 20, GREEDY, max_tokens=2)
        again.text()
        assert again.n_cached == 0


def test_requests_that_come_together_each_keep_their_idle_cache(smollm2_path) -> None:
    # Two conversations come back at once (while a long prompt is being computed, so both are
    # admitted between the same two steps): each takes its own cache before the idle ones are
    # trimmed, not only the first of them.
    first = {w: f"{w}: " + " ".join(f"{w} {i}" for i in range(60)) for w in ("alpha", "beta")}
    long = " ".join(f"Line {i} of a long document." for i in range(250))
    with LLM(smollm2_path, EngineOptions(n_ctx=4096, n_slots=4, idle_cache=0.0)) as llm:
        cold = [llm.generate(first[w], GREEDY, max_tokens=2) for w in ("alpha", "beta")]
        busy = llm.generate(long, GREEDY, max_tokens=2)  # seconds of prefill from here
        for stream in cold:
            stream.text()
        assert llm.stats()["busy_slots"] == 1, "the long prompt is still being computed"
        again = [llm.generate(first[w], GREEDY, max_tokens=2) for w in ("alpha", "beta")]
        for stream in again:
            stream.text()
        busy.text()
    for stream in again:
        assert _all_but_the_end(stream.n_cached, stream.n_prompt), (stream.n_cached, stream.n_prompt)


def test_an_idle_cache_kept_above_free_cells_moves_down(tiny_gguf) -> None:
    # Each step attends over the cells up to the highest one in use, free ones included: the idle
    # cache kept for the next turn, left above cells that others freed, would widen every step of
    # the request after it (Engine::lower_high_cells). It is moved down, and stays reusable.
    long = {w: " ".join(f"{w} {i}" for i in range(300)) for w in ("alpha", "beta")}
    with LLM(tiny_gguf, EngineOptions(n_ctx=8192, n_slots=4, idle_cache=0.0)) as llm:
        for word in ("alpha", "beta"):  # alpha is kept while beta runs: beta's cells follow it
            llm.generate(long[word], GREEDY, max_tokens=4, ignore_eos=True).text()
        beta_end = llm.stats()["kv_span"]
        short = llm.generate("short", GREEDY, max_tokens=4)  # drops alpha, keeps beta (the last)
        short.text()
        span = llm.stats()["kv_span"]
        again = llm.generate(long["beta"], GREEDY, max_tokens=2)
        again.text()
    beta_cells = again.n_prompt + 4
    assert beta_end >= again.n_prompt + 1000  # the setup: beta sat above alpha's ~1,400 cells
    # Each sequence's cells start on a 64-cell page of its own (vendor/patches/0013): at most a page
    # is left between the short request's cells and beta's.
    assert span <= beta_cells + short.n_prompt + short.n_generated + 64, (span, beta_cells)
    assert again.n_cached == again.n_prompt - 1  # still beta's cells, all of them
