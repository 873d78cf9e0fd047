"""Thinking control from each API's own fields to the engine's ChatOptions.

OpenAI: `reasoning_effort` (none/minimal turn thinking off; low/medium/high keep it on and reach
the template as `reasoning_effort`, which gpt-oss-style templates read). llama-server:
`chat_template_kwargs` (e.g. {"enable_thinking": false}; never the template's own inputs, such as
`messages`, nor control-token text) and `thinking_budget_tokens` /
`reasoning_budget_tokens`. Ollama: `think`, a bool or low/medium/high. A model's configured
default (`mr configure --think on|off`) applies when the request says nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from mr.engine import ChatOptions
from mr.engine.thinking import check_template_kwargs
from mr.jsontypes import JSON
from mr.server.errors import invalid

EFFORTS = ("low", "medium", "high")
OFF_EFFORTS = ("none", "minimal")


@dataclass(frozen=True)
class Thinking:
    enable: bool | None = None  # None: not said by the request
    kwargs: JSON | None = None
    budget: int | None = None

    def apply(self, options: ChatOptions | None, configured: bool | None) -> ChatOptions | None:
        """`options` with this thinking control (and the model's default when unset)."""
        enable = self.enable
        if enable is None and not (self.kwargs and "enable_thinking" in self.kwargs):
            enable = configured
        if enable is None and self.kwargs is None and self.budget is None:
            return options
        return msgspec.structs.replace(options or ChatOptions(), enable_thinking=enable,
                                       chat_template_kwargs=self.kwargs, reasoning_budget=self.budget)


def effort(value: str | None, param: str) -> tuple[bool | None, JSON]:
    """(enable_thinking, template kwargs) for an effort level."""
    if value is None:
        return None, {}
    if value in OFF_EFFORTS:
        return False, {}
    if value in EFFORTS:
        return True, {"reasoning_effort": value}
    raise invalid(param, f"{param} must be one of {', '.join(OFF_EFFORTS + EFFORTS)}")


def from_openai(reasoning_effort: str | None, chat_template_kwargs: JSON | None,
                budget: int | None) -> Thinking:
    enable, extra = effort(reasoning_effort, "reasoning_effort")
    # Before any model is touched; the control-token text in values needs the model's vocabulary
    # and is refused where the prompt is rendered (mr.engine.thinking.check_kwargs_text).
    check_template_kwargs(chat_template_kwargs)
    kwargs = {**extra, **(chat_template_kwargs or {})} or None
    if kwargs and "enable_thinking" in kwargs and not isinstance(kwargs["enable_thinking"], bool):
        raise invalid("chat_template_kwargs", "chat_template_kwargs.enable_thinking must be true or false")
    if budget is not None and budget < 0:
        budget = None  # llama-server's -1: no cap
    return Thinking(enable=enable, kwargs=kwargs, budget=budget)


def from_effort(value: str | None, param: str) -> Thinking:
    """An effort level alone (the Responses API's `reasoning.effort`)."""
    enable, extra = effort(value, param)
    return Thinking(enable=enable, kwargs=extra or None)


def from_ollama(think: bool | str | None) -> Thinking:
    if think is None or isinstance(think, bool):
        return Thinking(enable=think)
    return from_effort(think, "think")
