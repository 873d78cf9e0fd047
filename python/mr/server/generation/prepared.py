"""The one prepared-request type: what every API's body becomes before any model is touched."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import numpy as np

from mr.engine import LLM, ChatOptions, SamplingOptions
from mr.jsontypes import JSON
from mr.server.thinking import Thinking

# The sampling of choice `index` on a model with `n_vocab` tokens (OpenAI's seed + index and
# logit_bias ids need them); most APIs have one sampling for their single answer.
Sampler = Callable[[int, int], SamplingOptions]


def same_sampling(sampling: SamplingOptions) -> Sampler:
    return lambda _n_vocab, _index: sampling


@dataclass(frozen=True)
class Chat:
    """A conversation the model's chat template renders: OpenAI-shaped messages (every API
    converts to them), tools and output format, thinking control."""

    messages: list[JSON]
    options: ChatOptions | None = None
    thinking: Thinking = field(default_factory=Thinking)  # with the model's configured default


@dataclass(frozen=True)
class Text:
    """Prompts the model reads as they are (no template, no system prompt). `encode` turns them
    into token ids with the leased model, in a worker thread; `count` says beforehand how many
    there are, so a request that can never be admitted fails before it is tokenized."""

    encode: Callable[[LLM], list[np.ndarray]]
    count: int = 1


Input = TypeVar("Input", Chat, Text)


@dataclass(frozen=True)
class Prepared(Generic[Input]):
    """A request's engine arguments, validated before any model is touched."""

    model: str
    input: Input
    sampling: Sampler = field(default_factory=lambda: same_sampling(SamplingOptions()))
    fields: object = None  # the body (Ollama: its options): the sampling it set beats the model's defaults
    max_tokens: int = -1
    stop: list[str] = field(default_factory=list)
    ignore_eos: bool = False
    n: int = 1  # answers per prompt
    logprobs: int | None = None  # None: off; 0: the chosen tokens'; N: with N alternatives
    prediction: str | None = None  # Predicted Outputs (chat): a draft source for every answer
    keep_alive: float | None = None  # Ollama's: how long the model stays loaded after this request

    @property
    def n_streams(self) -> int:
        prompts = self.input.count if isinstance(self.input, Text) else 1
        return prompts * self.n
