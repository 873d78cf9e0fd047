"""Thinking control in the engine, with the real SmolLM2 under a small reasoning template
(tests/data/think.jinja): reasoning is separated, can be switched off, and a budget caps it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mr.engine import LLM, ChatOptions, SamplingOptions
from mr.engine.types import ChatMessage, Usage

TEMPLATE = (Path(__file__).parents[1] / "data" / "think.jinja").read_text()
GREEDY = SamplingOptions(temperature=0)
ASK = [{"role": "user", "content": "Write a long story about a dragon who learns to fly."}]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def thinker(smollm2_path: Path) -> Iterator[LLM]:
    from mr.engine import EngineOptions

    # deterministic: the second answer finds the first's prompt cached, and must still be the same
    options = EngineOptions(n_ctx=4096, n_slots=2, deterministic=True)
    with LLM(smollm2_path, options, chat_template=TEMPLATE) as llm:
        yield llm


def answer(llm: LLM, options: ChatOptions, max_tokens: int = 48) -> tuple[ChatMessage, Usage]:
    stream = llm.chat(ASK, GREEDY, max_tokens=max_tokens, options=options)
    return stream.collect(), stream.usage


def test_reasoning_is_separated_and_the_same_twice(thinker: LLM) -> None:
    first, _ = answer(thinker, ChatOptions())
    again, _ = answer(thinker, ChatOptions())
    assert first.reasoning_content  # the template opened <think>: the model's words are reasoning
    assert "<think>" not in first.content and "</think>" not in first.reasoning_content
    assert (first.content, first.reasoning_content) == (again.content, again.reasoning_content)


@pytest.mark.parametrize("options", [ChatOptions(enable_thinking=False),
                                     ChatOptions(chat_template_kwargs={"enable_thinking": False})])
def test_switched_off(thinker: LLM, options: ChatOptions) -> None:
    message, usage = answer(thinker, options)
    assert message.content and not message.reasoning_content
    assert usage.completion_tokens > 0


def test_budget_caps_reasoning(thinker: LLM) -> None:
    free, _ = answer(thinker, ChatOptions(), max_tokens=64)
    capped, _ = answer(thinker, ChatOptions(reasoning_budget=6), max_tokens=64)
    n_free = len(thinker.tokenize(free.reasoning_content, add_special=False))
    n_capped = len(thinker.tokenize(capped.reasoning_content, add_special=False))
    assert n_capped <= 8 < n_free
    prompt, _ = thinker.render_chat(ASK, ChatOptions(enable_thinking=False))
    assert prompt.endswith("<think>\n\n</think>\n\n")
