"""Tokenizing is bounded in time (issue 29, finding 7).

llama.cpp splits a text at each special-token text in it before tokenizing the parts, and found
the part to split by counting from the front of the list of parts: quadratic in the special tokens,
minutes for a few megabytes of "<|im_start|>". vendor/patches/0007-* keeps the place instead, so
text up to mr.engine.limits.MAX_TEXT_CHARS tokenizes quickly even when packed with them, and
LLM refuses longer text before tokenizing any of it.
"""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

from mr.engine import LLM
from mr.engine.limits import MAX_REQUEST_CHARS, MAX_TEXT_CHARS
from mr.errors import InvalidArgumentError

SPECIAL = "<|im_start|>"
UNIT = f"hello wörld 🦀 {SPECIAL} "
QUICK_S = 2.5  # 0.6-1.0 s measured on a busy 2-core machine, 2.9 s before the fix
# scripts/sanitize.sh instruments the tokenizer (llama-vocab.cpp), which then runs about ten times
# slower (9 s here): the wall-clock bound is the plain build's; linearity is checked either way.
TIMED = "libasan" not in os.environ.get("LD_PRELOAD", "")


def worst_case(n_chars: int) -> str:
    return (UNIT * (n_chars // len(UNIT) + 1))[:n_chars]


def test_special_token_text_at_the_limit_tokenizes_quickly_and_exactly(smollm2: LLM) -> None:
    text = worst_case(MAX_TEXT_CHARS)
    started = time.monotonic()
    tokens = smollm2.tokenize(text, add_special=False, parse_special=True)
    elapsed = time.monotonic() - started
    assert elapsed < QUICK_S or not TIMED
    # The parts between special tokens are tokenized on their own: the same tokens, in order.
    (special,) = smollm2.tokenize(SPECIAL, add_special=False, parse_special=True)
    parts = [smollm2.tokenize(part, add_special=False, parse_special=False) for part in text.split(SPECIAL)]
    expected = np.concatenate([np.concatenate([p, [special]]) for p in parts[:-1]] + [parts[-1]])
    assert np.array_equal(tokens, expected)


def test_the_split_is_linear_in_the_special_tokens(smollm2: LLM) -> None:
    def seconds(n_chars: int) -> float:
        text = worst_case(n_chars)
        best = float("inf")
        for _ in range(3):
            started = time.monotonic()
            smollm2.tokenize(text, add_special=False, parse_special=True)
            best = min(best, time.monotonic() - started)
        return best

    small, large = seconds(MAX_TEXT_CHARS // 16), seconds(MAX_TEXT_CHARS)
    # 16 times the text: 10-16 times the time measured, about 60 before the fix (quadratic)
    assert large < 32 * small


@pytest.mark.parametrize("call", ["tokenize", "generate", "embed", "prepare_chat"])
def test_text_beyond_the_limit_is_refused_before_tokenizing(smollm2: LLM, call: str) -> None:
    text = worst_case(MAX_TEXT_CHARS + 1)
    started = time.monotonic()
    with pytest.raises(InvalidArgumentError, match=f"{MAX_TEXT_CHARS:,}"):
        if call == "tokenize":
            smollm2.tokenize(text, parse_special=True)
        elif call == "generate":
            smollm2.generate(text, max_tokens=1)
        elif call == "embed":
            smollm2.embed(["short", text])
        else:
            smollm2.prepare_chat([{"role": "user", "content": text}])
    assert time.monotonic() - started < 1.0
    assert len(smollm2.tokenize(worst_case(MAX_TEXT_CHARS))) > 0  # the limit itself is accepted


@pytest.mark.parametrize("call", ["embed", "rerank"])
def test_the_texts_of_one_call_are_bounded_together(smollm2: LLM, call: str) -> None:
    texts = [worst_case(MAX_TEXT_CHARS)] * (MAX_REQUEST_CHARS // MAX_TEXT_CHARS + 1)  # each within its limit
    with pytest.raises(InvalidArgumentError, match=f"{MAX_REQUEST_CHARS:,}"):
        if call == "embed":
            smollm2.embed(texts)
        else:
            smollm2.rerank("query", texts)
