"""Pictures under M-RoPE (the Qwen-VL family): a picture takes n_tokens KV cells but advances
fewer positions (its grid's side), so the engine places text after it, and reuses and drops
cached cells, by position rather than by count. bench.tiny_mrope writes a tiny random Qwen2-VL
pair; in the deterministic mode a cached answer must equal the cold one bit for bit on every
CPU, which fails as soon as a reused prefix sits at the wrong positions or keeps stale cells."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from mr import _native
from mr.engine import LLM, EngineOptions, SamplingOptions

GREEDY = SamplingOptions(temperature=0)


@pytest.fixture(scope="module")
def pair(smollm2_path: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from bench.tiny_mrope import write_tiny_mrope_vlm

    return write_tiny_mrope_vlm(tmp_path_factory.mktemp("mrope"), smollm2_path)


def load(pair: tuple[Path, Path]) -> LLM:
    model, mmproj = pair
    return LLM(model, EngineOptions(n_ctx=4096, n_slots=2, deterministic=True, mmproj=str(mmproj)))


@pytest.fixture(scope="module")
def mrope(pair: tuple[Path, Path]) -> Iterator[LLM]:
    llm = load(pair)
    if not llm.deterministic:
        llm.close()
        pytest.skip("the deterministic mode holds only where the CPU computes every step")
    yield llm
    llm.close()


def request(llm: LLM, seed: int, text: str = " What is this?") -> _native.Request:
    rgb = np.random.default_rng(seed).integers(0, 256, (96, 96, 3), dtype=np.uint8).tobytes()
    image = _native.Bitmap.image(96, 96, rgb, hashlib.sha256(rgb).hexdigest())
    segments = [llm.tokenize("Look at it:"), llm.tokenize(text, add_special=False)]
    built = _native.Request(max_tokens=1, n_logprobs=5)
    assert llm.projector is not None
    llm.projector.build(built, segments, [image])
    return built


def first_token(llm: LLM, built: _native.Request) -> tuple[list[tuple[int, float]], int, int]:
    """The first answer token's top logprobs, the prompt's cells and those taken from the cache."""
    _, events = llm._pump.submit_sync(built)
    top: list[tuple[int, float]] = []
    while True:
        event = events.get(timeout=60)
        if event is None:
            continue
        top = top or list(event.top)
        if event.finished:
            return top, event.n_prompt, event.n_cached


def test_a_picture_takes_more_cells_than_positions(mrope: LLM) -> None:
    (span,) = request(mrope, 1).media
    assert span.n_tokens == 9  # 96x96 in 16-pixel patches merged 2x2: a 3x3 grid


def test_a_cached_picture_answers_as_the_cold_one_bit_for_bit(mrope: LLM) -> None:
    cold, n_prompt, _ = first_token(mrope, request(mrope, 2))
    first_token(mrope, request(mrope, 3, " Something else entirely, longer than the first."))
    warm, n_again, cached = first_token(mrope, request(mrope, 2))
    assert n_again == n_prompt
    assert cached >= n_prompt - 2, "the picture and the text after it came from the cache"
    assert warm == cold


def test_text_after_a_reused_picture_is_placed_at_its_positions(mrope: LLM, pair: tuple[Path, Path]) -> None:
    # the same picture, another question: the prefix up to the question is reused, and the new
    # text must continue at the picture's positions, as in a cold request of the same prompt
    first_token(mrope, request(mrope, 4, " First question?"))
    warm, _, cached = first_token(mrope, request(mrope, 4, " A second, different question?"))
    assert cached > 9
    with load(pair) as cold_llm:
        cold, _, none = first_token(cold_llm, request(cold_llm, 4, " A second, different question?"))
    assert none == 0
    assert warm == cold


def test_two_pictures_give_different_logits(mrope: LLM) -> None:
    a, _, _ = first_token(mrope, request(mrope, 5))
    b, _, _ = first_token(mrope, request(mrope, 6))
    assert a != b
