"""Thinking control for reasoning templates: whether the template opens a thinking block
(`enable_thinking` and the other template variables of chat_template_kwargs) and a cap on the
thinking tokens (llama.cpp's reasoning-budget sampler forces the end tag once it is spent)."""

from __future__ import annotations

import json
from typing import Any

from mr import _native
from mr.engine.types import ChatOptions
from mr.errors import InvalidArgumentError

DEFAULT_START, DEFAULT_END = "<think>", "</think>"


def template_inputs(opts: ChatOptions) -> tuple[bool, str]:
    """(enable_thinking, chat_template_kwargs as JSON) for the template."""
    kwargs: dict[str, Any] = dict(opts.chat_template_kwargs or {})
    enable = opts.enable_thinking
    if enable is None:
        raw = kwargs.get("enable_thinking", True)
        if not isinstance(raw, bool):
            raise InvalidArgumentError("chat_template_kwargs.enable_thinking must be true or false")
        enable = raw
    kwargs["enable_thinking"] = enable  # templates read the variable; the parser reads the flag
    return enable, json.dumps(kwargs, ensure_ascii=False)


def budget_fields(opts: ChatOptions, rendered: _native.ChatPrompt, source: str) -> dict[str, object]:
    """SamplingOptions' reasoning_* fields when a budget is asked for and the template thinks."""
    if opts.reasoning_budget is None:
        return {}
    if opts.reasoning_budget < 0:
        raise InvalidArgumentError("the reasoning budget must be >= 0")
    start, ends = rendered.thinking_start_tag, list(rendered.thinking_end_tags)
    if not start and DEFAULT_START in source:  # llama.cpp did not recognise the template's tags
        start, ends = DEFAULT_START, [DEFAULT_END]
    if not start or not ends:
        return {}  # nothing to cap: the template has no thinking block
    return {"reasoning_budget": opts.reasoning_budget, "reasoning_start": start,
            "reasoning_end": [e.strip() or e for e in ends], "reasoning_prefill": rendered.prompt[-256:]}
