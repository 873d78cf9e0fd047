"""Sampling fields, read the same way from every API's body."""

from __future__ import annotations

from collections.abc import Iterable

from mr.engine import SamplingOptions
from mr.jsontypes import JSON

# The fields whose names (and meaning) the APIs share with SamplingOptions; each API has a subset.
SAMPLING_FIELDS = ("temperature", "top_p", "top_k", "min_p", "presence_penalty", "frequency_penalty",
                   "repeat_penalty")
SEED_RANGE = 0xFFFFFFFF  # llama.cpp takes [0, 2**32 - 1); larger seeds wrap


def sampling_fields(body: object, names: Iterable[str] = SAMPLING_FIELDS) -> JSON:
    """The SamplingOptions fields `body` sets (an unset one is None or absent)."""
    return {name: value for name in names if (value := getattr(body, name, None)) is not None}


def seeded(fields: JSON, seed: int | None, index: int = 0) -> JSON:
    """`fields` with the seed of answer `index` (seed + index); a negative seed is random."""
    if seed is not None and seed >= 0:
        return {**fields, "seed": (seed + index) % SEED_RANGE}
    return fields


def sampling_of(body: object, names: Iterable[str] = SAMPLING_FIELDS) -> SamplingOptions:
    return SamplingOptions(**sampling_fields(body, names))
