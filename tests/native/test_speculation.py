"""Speculative decoding (EngineOptions.spec, a request's prediction): drafts from the request's own
tokens (n-gram lookup) or its predicted output, verified in the step with its next token.

Lossless is checked where it holds bit for bit: in the deterministic mode a token's logits do not
depend on the step's shape, so an answer with speculation must be the one without, token for
token, greedy and seeded, for every draft source. (In the default mode a step of 1 + k tokens
takes other kernels than a step of one, so near-ties may fall the other way on some CPUs.)
"""

from __future__ import annotations

import json

import pytest

from mr import _native
from mr.engine import LLM, EngineOptions, SamplingOptions
from mr.errors import InvalidArgumentError

GREEDY = SamplingOptions(temperature=0)
# A text the model copies: the next tokens are in the prompt, so n-gram drafts are accepted.
SOURCE = "\n".join(f"def step_{i}(x):\n    return x * {i} + {i * i}\n" for i in range(12))
COPY = [{"role": "user", "content": "Repeat this code exactly, with nothing else:\n\n" + SOURCE}]
TOKENS = 96


def _options(spec: str, **kw: object) -> EngineOptions:
    return EngineOptions(n_ctx=8192, n_slots=2, deterministic=True, spec=spec, **kw)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def engines(smollm2_path):
    """One engine with speculation forced on (every draft found) and one with it off."""
    with LLM(smollm2_path, _options("ngram")) as on, LLM(smollm2_path, _options("off")) as off:
        if not (on.deterministic and off.deterministic):
            pytest.skip("the deterministic mode holds only where the CPU computes every step")
        yield on, off


def _answer(llm: LLM, sampling: SamplingOptions = GREEDY, **kw: object):
    stream = llm.chat(COPY, sampling, max_tokens=TOKENS, **kw)  # type: ignore[arg-type]
    deltas = list(stream)
    return stream, "".join(d.content or "" for d in deltas)


def _tokens(chat) -> list[int]:
    return list(chat.stream.tokens)


def test_ngram_drafts_are_accepted_and_the_answer_is_the_same(engines) -> None:
    on, off = engines
    with_spec, text_on = _answer(on)
    without, text_off = _answer(off)
    assert _tokens(with_spec) == _tokens(without)
    assert text_on == text_off
    counts = with_spec.spec
    assert counts.drafted > 0 and counts.accepted > 0, counts
    assert without.spec.drafted == 0
    stats = on._engine.stats()
    assert stats["spec_accepted"] >= counts.accepted and stats["spec_drafted"] >= counts.drafted


def test_a_repeated_request_drafts_the_earlier_answer(smollm2_path) -> None:
    # A story has little to draft from its own prompt; asked again, it drafts the first answer
    # (kept by the engine after its request) from its first tokens, and is still the same answer.
    story = [{"role": "user", "content": "Write a story about a lighthouse keeper."}]
    with LLM(smollm2_path, _options("ngram")) as on, LLM(smollm2_path, _options("off")) as off:
        if not (on.deterministic and off.deterministic):
            pytest.skip("the deterministic mode holds only where the CPU computes every step")
        answers = []
        for _ in range(3):  # one after another
            answers.append(on.chat(story, GREEDY, max_tokens=TOKENS))
            answers[-1].collect()
        plain = off.chat(story, GREEDY, max_tokens=TOKENS)
        plain.collect()
    first, *again = answers
    n = len(_tokens(plain))  # the model's own length: the wording differs between CPUs
    assert n > 16
    for answer in answers:
        assert _tokens(answer) == _tokens(plain)
    for answer in again:  # nearly all of it drafted, against little the first time
        assert answer.spec.accepted >= n - 8 > first.spec.accepted + n // 4, answer.spec


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_seeded_sampling_is_the_same_with_drafts(engines, seed: int) -> None:
    # The sampler draws once per token it produces, in the same order with or without a draft:
    # a seeded answer at temperature > 0 is the same one (so is its distribution over seeds).
    on, off = engines
    sampling = SamplingOptions(temperature=0.8, top_k=0, top_p=1.0, min_p=0.0, seed=seed)
    with_spec, _ = _answer(on, sampling)
    without, _ = _answer(off, sampling)
    assert _tokens(with_spec) == _tokens(without)


def test_a_prediction_is_drafted_first(engines) -> None:
    on, off = engines
    expected, text = _answer(off)
    predicted, _ = _answer(on, prediction=text)
    assert _tokens(predicted) == _tokens(expected)
    counts = predicted.spec
    assert counts.prediction_accepted > TOKENS // 2, counts  # the whole answer was predicted
    assert counts.prediction_rejected <= 1, counts  # at most the draft past its end


def test_a_prediction_drafts_with_spec_off(smollm2_path) -> None:
    # With spec off there are no n-gram drafts, but the client's prediction is still a source
    # (whether a draft pays is still measured: this engine is fresh, so it tries).
    with LLM(smollm2_path, _options("off")) as off:
        expected, text = _answer(off)
        predicted, _ = _answer(off, prediction=text)
    assert _tokens(predicted) == _tokens(expected)
    assert predicted.spec.prediction_accepted > 0
    assert predicted.spec.accepted == predicted.spec.prediction_accepted


def test_a_wrong_prediction_changes_nothing_but_its_counts(engines) -> None:
    on, off = engines
    expected, _ = _answer(off)
    wrong = SOURCE.replace("return", "yield").replace("x *", "y -")
    predicted, _ = _answer(on, prediction=wrong)
    assert _tokens(predicted) == _tokens(expected)
    assert predicted.spec.prediction_rejected > 0


def test_logprobs_grammar_and_max_tokens_hold_with_drafts(engines) -> None:
    on, off = engines
    schema = {"type": "object", "properties": {"code": {"type": "string"}}, "required": ["code"]}
    results = []
    for llm in (on, off):
        stream = llm.generate(COPY[0]["content"] + "\nAnswer in JSON: ", SamplingOptions(
            temperature=0, grammar=_native.json_schema_to_grammar(json.dumps(schema))),
            max_tokens=40, logprobs=2)
        stream.text()
        results.append((list(stream.tokens), [round(lp.logprob, 6) for lp in stream.logprobs]))
        assert stream.n_generated == 40  # max_tokens exactly, drafts or not
        assert len(stream.logprobs) == 40
    assert results[0] == results[1]


def test_a_stop_string_inside_an_accepted_draft_ends_the_answer_there(engines) -> None:
    on, off = engines
    texts = []
    for llm in (on, off):
        stream = llm.chat(COPY, GREEDY, max_tokens=TOKENS, stop=["step_3"])
        texts.append("".join(d.content or "" for d in stream))
        assert stream.stream.finish_reason == "stop"
    assert texts[0] == texts[1] and "step_3" not in texts[0]


def test_spec_options_are_checked(smollm2_path) -> None:
    with pytest.raises(InvalidArgumentError, match="spec"):
        LLM(smollm2_path, EngineOptions(n_ctx=512, spec="always"))
    with pytest.raises(InvalidArgumentError, match="spec_max"):
        LLM(smollm2_path, EngineOptions(n_ctx=512, spec_max=65))


def test_a_draft_model_drafting_for_itself_is_always_right(smollm2_path) -> None:
    # SmolLM2 drafts for itself: its greedy drafts are the greedy answer, so every drafted token
    # is kept (the deterministic mode makes the two contexts' logits agree). A real pairing needs a
    # smaller model with the same vocabulary, which is not on hand here. Drafting is forced: a
    # draft model as slow as the target never pays, and "auto" may find that out on some CPUs.
    with LLM(smollm2_path, _options("ngram", draft_model=str(smollm2_path), spec_max=4)) as drafted, \
            LLM(smollm2_path, _options("off")) as plain:
        story = [{"role": "user", "content": "Write a story about a lighthouse keeper."}]
        a = drafted.chat(story, GREEDY, max_tokens=48)
        b = plain.chat(story, GREEDY, max_tokens=48)
        assert "".join(d.content or "" for d in a) == "".join(d.content or "" for d in b)
        assert list(a.stream.tokens) == list(b.stream.tokens)
        assert a.spec.drafted > 0 and a.spec.accepted == a.spec.drafted, a.spec


def test_a_draft_model_with_another_vocabulary_is_refused(smollm2_path, tmp_path) -> None:
    from mr.errors import ModelLoadError
    from support.models import write_tiny_llama

    other = tmp_path / "other-vocab.gguf"
    write_tiny_llama(smollm2_path, other, renamed_tokens={1000: "not-smollm2"})
    with pytest.raises(ModelLoadError, match="vocabulary"):
        LLM(smollm2_path, EngineOptions(n_ctx=512, draft_model=str(other)))


def test_a_poor_draft_model_changes_nothing_but_the_counts(smollm2_path, tiny_gguf) -> None:
    # The tiny random model shares SmolLM2's tokenizer: a legal draft model whose drafts are
    # mostly wrong. Every draft is taken (ngram mode) and the answer is still SmolLM2's own.
    with LLM(smollm2_path, _options("ngram", draft_model=str(tiny_gguf), spec_max=3)) as drafted, \
            LLM(smollm2_path, _options("off")) as plain:
        story = [{"role": "user", "content": "Write a story about a lighthouse keeper."}]
        a = drafted.chat(story, GREEDY, max_tokens=32)
        b = plain.chat(story, GREEDY, max_tokens=32)
        assert a.collect().content == b.collect().content
        assert list(a.stream.tokens) == list(b.stream.tokens) and len(a.stream.tokens) > 8
        assert a.spec.drafted > a.spec.accepted, a.spec


def test_a_step_known_only_from_a_longer_one_costs_its_share() -> None:
    # The planner knew 1-token steps and one prompt step of 243 tokens. It priced a 65-token draft
    # step at the whole prompt step, so long drafts were never tried; now at the prompt step's
    # cost per token (optimistic: the engine tries that size once, then knows it).
    from mr._native.testing import step_cost_estimate

    steps = [(1, 1, 0, 10_000.0), (243, 1, 243, 700_000.0)]
    assert step_cost_estimate(steps, 65, 1) == pytest.approx(700_000.0 * 65 / 243)
    assert step_cost_estimate([*steps, (65, 1, 0, 250_000.0)], 65, 1) == pytest.approx(250_000.0)
    assert step_cost_estimate([*steps, (65, 1, 0, 250_000.0)], 100, 1) == pytest.approx(
        250_000.0 + (700_000.0 - 250_000.0) * 35 / 178)  # between two measured sizes


def test_a_draft_between_small_steps_and_a_tiled_one_is_priced_between_them() -> None:
    # Small steps cost about a token each on a 2-core CPU (13, 50 and 62 ms for 1, 5 and 6 tokens),
    # while a 64-token step takes the kernels' tiles (300 ms). A 39-token draft was extrapolated
    # from the two nearest small steps (458 ms: never worth it); it lies between 6 and 64.
    from mr._native.testing import step_cost_estimate

    steps = [(1, 1, 0, 13_000.0), (5, 1, 0, 50_000.0), (6, 1, 0, 62_000.0), (64, 1, 0, 300_000.0)]
    assert step_cost_estimate(steps, 39, 1) == pytest.approx(62_000.0 + (300_000.0 - 62_000.0) * 33 / 58)
    # Four sequences' drafts make a tiled step that no several-sequence step has measured yet:
    # one sequence's tiled steps (a prompt's) stand in, not the small steps' slope.
    steps = [(4, 4, 0, 25_000.0), (242, 1, 242, 766_000.0)]
    assert step_cost_estimate(steps, 68, 4) == pytest.approx(766_000.0 * 68 / 242)


def test_a_step_with_prompt_tokens_beside_other_sequences_does_not_price_drafts() -> None:
    # Measured here: 8 unrelated chats, 8 rows at 52 ms a step. A new request's 47-token prompt
    # beside 7 generating slots made a 54-token step of 8 sequences at 264 ms (prompt tokens
    # compute no logits and attend to few cells); a 46-token draft of 8 sequences, the same size,
    # took 384 ms. Priced at the prompt step, such drafts looked worth taking and lost.
    from mr._native.testing import step_cost_estimate

    decode = (8, 8, 0, 52_000.0)
    assert step_cost_estimate([decode, (54, 8, 47, 264_000.0)], 54, 8) != pytest.approx(264_000.0)
    assert step_cost_estimate([decode, (54, 8, 47, 264_000.0), (54, 8, 0, 384_000.0)], 54, 8) == (
        pytest.approx(384_000.0))
    assert step_cost_estimate([(54, 8, 47, 264_000.0)], 54, 8) == 0.0  # nothing a draft can go by
    # From the tile up such a step is the kernels' first measure, until a draft of its size
    # replaces it (not averaged with it).
    prompts = (100, 4, 96, 300_000.0)
    assert step_cost_estimate([(4, 4, 0, 25_000.0), prompts], 100, 4) == pytest.approx(300_000.0)
    assert step_cost_estimate([(4, 4, 0, 25_000.0), prompts, (100, 4, 0, 450_000.0)], 100, 4) == (
        pytest.approx(450_000.0))
    # One sequence's prompt alone counts: its tokens attend to the cells its drafts will.
    assert step_cost_estimate([(1, 1, 0, 10_000.0), (30, 1, 30, 90_000.0)], 30, 1) == pytest.approx(90_000.0)


def test_several_sequences_step_at_most_twice_the_longest_step_they_measured() -> None:
    # 8 unrelated chats at 52 ms a step (8 rows), each slot with a 64-token draft recalled after a
    # long match and the engine-wide copy rate (0.96). Priced optimistically, the unmeasured sizes
    # above 8 looked nearly free: without the bound, 80 draft rows were taken at once here.
    from mr._native.testing import draft_plan

    decode = (8, 8, 0, 52_000.0)
    rates, k_max = [0.96] * 8, [64] * 8
    assert 0 < sum(draft_plan([decode], rates, k_max, 8, 504)) <= 8
    # Once a 16-row step is measured, up to 32; a prompt step beside them does not count.
    assert 8 < sum(draft_plan([decode, (16, 8, 0, 60_000.0)], rates, k_max, 8, 504)) <= 24
    assert sum(draft_plan([decode, (200, 8, 192, 500_000.0)], rates, k_max, 8, 504)) <= 8
    # One sequence's step is not bounded: a long draft of one sequence costs a few tokens' time.
    assert sum(draft_plan([(1, 1, 0, 13_000.0)], [0.96], [64], 1, 511)) > 2


def test_a_step_past_the_longest_measured_is_priced_below_its_cost_per_token() -> None:
    # 4 copies of a quoting answer on a 2-core Zen 3: steps of 4 sequences cost about 5 ms a row
    # up to the 64 measured. Priced at 3% of the 64-row step a token (9 ms), a longer step never
    # looked worth trying, though every draft was kept; llama-server's ngram-mod took 260 rows.
    from mr._native.testing import draft_plan, step_cost_estimate

    steps = [(4, 4, 0, 27_000.0), (8, 4, 0, 41_000.0), (24, 4, 0, 125_000.0), (64, 4, 0, 300_000.0)]
    assert step_cost_estimate(steps, 128, 4) < 2 * 300_000.0
    assert 60 < sum(draft_plan(steps, [0.995] * 4, [64] * 4, 4, 508)) <= 2 * 64 - 4
    # A small step's price is as before: 3% of it a token (a long draft of one sequence costs a
    # few tokens' time).
    assert step_cost_estimate([(1, 1, 0, 13_000.0)], 11, 1) == pytest.approx(13_000.0 * 1.3)


def test_small_steps_are_priced_by_their_number_of_sequences() -> None:
    # 8 unrelated chats on a 2-core Zen 3: plain steps of 8 sequences took 50 ms and their 12-row
    # drafting steps 93 ms, while one sequence's 12-row drafts took 40 ms. Priced by size alone,
    # the two averaged into one figure, drafts beside 8 sequences looked nearly free, and lost.
    from mr._native.testing import draft_plan, step_cost_estimate

    steps = [(1, 1, 0, 13_000.0), (12, 1, 0, 40_000.0), (8, 8, 0, 50_000.0), (12, 8, 0, 93_000.0)]
    assert step_cost_estimate(steps, 12, 8) == pytest.approx(93_000.0)
    assert step_cost_estimate(steps, 12, 1) == pytest.approx(40_000.0)
    assert step_cost_estimate(steps, 10, 8) == pytest.approx((50_000.0 + 93_000.0) / 2)
    assert sum(draft_plan(steps, [0.8] * 8, [4] * 8, 8, 504)) == 0
    assert sum(draft_plan(steps, [0.8], [11], 1, 511)) > 0
    # A count of sequences drafts only once its own plain step is measured.
    assert sum(draft_plan(steps, [0.99] * 4, [4] * 4, 4, 508)) == 0
    assert sum(draft_plan([*steps, (4, 4, 0, 27_000.0)], [0.99] * 4, [4] * 4, 4, 508)) > 0


def test_a_copied_text_is_recalled_from_the_source_that_goes_furthest() -> None:
    # Copies of one request run side by side: the copy beside this one is a token ahead, while the
    # same request's earlier answer, kept in memory, holds all of it. Both agree with this one's
    # last tokens; the copy was taken (the first long match), so the draft was one token.
    from mr._native.testing import recall_draft

    prompt, answer = list(range(500, 540)), list(range(1000, 1100))
    seq = prompt + answer[:20]
    running, kept = prompt + answer[:21], prompt + answer
    draft, matched = recall_draft([running, kept], seq, 32)
    assert matched >= 16
    assert draft == answer[20:52]
    # Without a long match anywhere, the most tokens agreeing still win.
    draft, matched = recall_draft([[1, 8, 9, 2], [7, 8, 9, 3]], [5, 7, 8, 9], 4)
    assert (draft, matched) == ([3], 3)


def test_the_acceptance_copying_earns_is_where_the_next_request_starts(smollm2_path) -> None:
    # spec_copy_rate: the share of drafts kept after long matches, over recent requests. A new
    # request's own count starts from it: copies of a request answered before (the bench's @8
    # wave) drafted nothing from a fixed 0.9, the planner pricing 8 x 64 more tokens in a step
    # above what 0.9 promised, though every copy of the kept answer would have been kept.
    # Matches in other requests' text count apart (spec_recall_rate): unrelated stories that
    # share a stock opening started from the copy rate their own repeats had earned, and lost.
    with LLM(smollm2_path, _options("ngram")) as on:
        if not on.deterministic:
            pytest.skip("the deterministic mode holds only where the CPU computes every step")
        stats = on.stats()
        assert stats["spec_copy_rate"] == stats["spec_recall_rate"] == pytest.approx(0.9)  # the priors
        _answer(on)  # copies its own prompt; no other request's text to recall yet
        stats = on.stats()
        assert stats["spec_copy_rate"] > 0.9 and stats["spec_recall_rate"] == pytest.approx(0.9)
        for _ in range(2):  # repeats recall the kept answer before their own text matches, and keep it
            _answer(on)
        stats = on.stats()
        assert stats["spec_copy_rate"] > 0.95 and stats["spec_recall_rate"] > 0.9


def test_a_draft_not_taken_still_teaches_acceptance(smollm2_path) -> None:
    # A draft found but not taken (it did not pay, or the batch had no room) still has its first
    # token checked against the token the step samples: a slot whose acceptance fell at one bad
    # draft (8 copies of a request that left the kept answer after 6 tokens) learns it back while
    # not drafting, rather than never drafting again. Here the batch holds 4 tokens: two requests'
    # next tokens and one draft of 2, so the second request's draft is never taken.
    # The deterministic mode keeps the answer the prediction's whatever the batch's shape, so both
    # requests always have a draft to offer.
    story = [{"role": "user", "content": "Write a story about a lighthouse keeper."}]
    with LLM(smollm2_path, EngineOptions(n_ctx=2048, n_slots=1, deterministic=True)) as plain:
        expected = plain.chat(story, GREEDY, max_tokens=24).collect().content
    options = EngineOptions(n_ctx=2048, n_slots=2, n_batch=4, deterministic=True, spec="ngram")
    with LLM(smollm2_path, options) as llm:
        if not llm.deterministic:
            pytest.skip("the deterministic mode holds only where the CPU computes every step")
        assert llm.stats()["spec_checked"] == 0
        both = [llm.chat(story, GREEDY, max_tokens=24, prediction=expected) for _ in range(2)]
        for answer in both:
            answer.collect()
        assert llm.stats()["spec_checked"] >= 1
