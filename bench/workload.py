"""Prompts of controlled length, different for every request so no cache helps unless meant to."""

from __future__ import annotations

import random
from typing import Any

from mr import _native

_WORDS = (
    "river", "mountain", "quiet", "engine", "garden", "window", "silver", "morning", "market", "letter",
    "winter", "candle", "harbor", "forest", "signal", "pattern", "ladder", "copper", "meadow", "thunder",
    "pocket", "lantern", "island", "velvet", "orchard", "compass", "shadow", "kettle", "marble", "ribbon",
    "canyon", "falcon", "glacier", "harvest", "journey", "needle", "orbit", "pebble", "quarry", "saddle",
    "timber", "valley", "whistle", "yellow", "anchor", "basket", "cradle", "desert", "ember", "feather",
    "gravel", "hollow", "ivory", "jacket", "kernel", "lemon", "mirror", "nectar", "oyster", "parcel",
    "quartz", "rocket", "spindle", "tunnel", "umbrella", "violet", "walnut", "zephyr", "bridge", "castle",
    "dragon", "empire", "fabric", "galaxy", "hammer", "insect", "jungle", "knight", "ladle", "magnet",
    "noodle", "office", "palace", "puzzle", "rabbit", "sailor", "tiger",
)

CHAT_QUESTION = "Write a long story about a {a} and a {b} who travel to the {c}. Request {n}."


def words(n_tokens: int, model: _native.Model, seed: int) -> str:
    """Text of about `n_tokens` tokens (never fewer), made of common words in random order."""
    rng = random.Random(seed)
    text: list[str] = []
    while True:
        text.extend(rng.choice(_WORDS) for _ in range(max(8, n_tokens // 2)))
        joined = " ".join(text)
        if len(model.tokenize(joined, False, False)) >= n_tokens:
            return _trim(joined, n_tokens, model)


def _trim(text: str, n_tokens: int, model: _native.Model) -> str:
    parts = text.split(" ")
    lo, hi = 1, len(parts)
    while lo < hi:  # the fewest words with at least n_tokens tokens
        mid = (lo + hi) // 2
        if len(model.tokenize(" ".join(parts[:mid]), False, False)) >= n_tokens:
            hi = mid
        else:
            lo = mid + 1
    return " ".join(parts[:lo])


def question(n: int, seed: int = 0) -> str:
    """A short user message, distinct per `n` (and per repetition through `seed`)."""
    rng = random.Random(n * 7919 + seed)
    a, b, c = (rng.choice(_WORDS) for _ in range(3))
    return CHAT_QUESTION.format(a=a, b=b, c=c, n=f"{seed}-{n}")


def chat_messages(user: str, system: str | None = None) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    if system:
        messages.append({"role": "system", "content": system})
    messages.append({"role": "user", "content": user})
    return messages


def random_tokens(n: int, n_vocab: int, seed: int) -> list[int]:
    """Random ordinary token ids (as llama-bench's pp uses), avoiding the first special ids."""
    rng = random.Random(seed)
    return [rng.randrange(100, n_vocab) for _ in range(n)]
