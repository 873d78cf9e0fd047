"""A model's own request defaults (an Ollama artifact's `.params` and `.system`), applied only
where a request says nothing: a field it set, a stop it gave or a system message it sent wins.

The routes call these once they hold the model: `apply` (sampling, max_tokens, stop) and, where
a chat template renders the prompt, `apply_messages`. A DMR model has none (LocalModel.defaults is
None); `NONE` stands in for them and changes nothing, so a route needs no branch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, TypeVar

import msgspec

from mr.jsontypes import JSON
from mr.store.ollama import Params, applied

# Ollama's params name -> SamplingOptions' field
_SAMPLING = {"temperature": "temperature", "top_k": "top_k", "top_p": "top_p", "min_p": "min_p",
             "repeat_penalty": "repeat_penalty", "presence_penalty": "presence_penalty",
             "frequency_penalty": "frequency_penalty", "seed": "seed",
             "repeat_last_n": "penalty_last_n"}


# SamplingOptions (mr.engine), which the store does not import
_Sampling = TypeVar("_Sampling", bound=msgspec.Struct)


def _asked(request: object, name: str) -> bool:
    theirs = "repeat_last_n" if name == "penalty_last_n" else name
    return request is not None and getattr(request, theirs, None) is not None


@dataclass(frozen=True)
class Generation(Generic[_Sampling]):
    """What the engine gets for one answer: sampling (SamplingOptions), max_tokens, stop."""

    sampling: _Sampling
    max_tokens: int
    stop: list[str]


@dataclass(frozen=True)
class ModelDefaults:
    sampling: dict[str, float] = field(default_factory=dict)  # SamplingOptions field -> value
    stop: tuple[str, ...] = ()
    max_tokens: int | None = None
    system: str | None = None

    @classmethod
    def of(cls, params: JSON, system: str | None) -> ModelDefaults | None:
        p: Params = applied(params)
        sampling = {ours: getattr(p, theirs) for theirs, ours in _SAMPLING.items()
                    if getattr(p, theirs) is not None}
        limit = p.num_predict if p.num_predict is not None and p.num_predict > 0 else None
        made = cls(sampling, tuple(s for s in p.stop or () if s), limit, system or None)
        return made if made != cls() else None

    def apply(self, request: object, sampling: _Sampling, max_tokens: int,
              stop: list[str]) -> Generation[_Sampling]:
        """The request's sampling, max_tokens and stop, each filled in where it left them unset
        (`request`: its body, or Ollama's `options`, whose set sampling fields win)."""
        return Generation(self.apply_sampling(sampling, request), self.apply_max_tokens(max_tokens),
                          self.apply_stop(stop))

    def apply_sampling(self, base: _Sampling, request: object) -> _Sampling:
        """`base` (SamplingOptions) with each default that `request` (an OpenAI body or
        Ollama's `options`, None when absent) leaves unset."""
        fields = {k: v for k, v in self.sampling.items() if not _asked(request, k)}
        return msgspec.structs.replace(base, **fields) if fields else base

    def apply_stop(self, stop: list[str]) -> list[str]:
        return stop if stop else list(self.stop)

    def apply_max_tokens(self, max_tokens: int) -> int:
        return max_tokens if max_tokens > 0 or self.max_tokens is None else self.max_tokens

    def apply_messages(self, messages: list[JSON]) -> list[JSON]:
        """The default system prompt first, unless the request sent a system message."""
        if not self.system or any(m.get("role") in ("system", "developer") for m in messages):
            return messages
        return [{"role": "system", "content": self.system}, *messages]


NONE = ModelDefaults()  # a model without defaults: every apply_* returns what it was given
