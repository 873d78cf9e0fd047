"""Thinking control for reasoning templates: whether the template opens a thinking block
(`enable_thinking` and the other template variables of chat_template_kwargs) and a cap on the
thinking tokens (llama.cpp's reasoning-budget sampler forces the end tag once it is spent)."""

from __future__ import annotations

import json

from mr import _native
from mr.engine.limits import INT32_MAX, bad
from mr.engine.prompt import SpecialGuard
from mr.engine.types import ChatOptions
from mr.errors import InvalidArgumentError
from mr.jsontypes import JSON

DEFAULT_START, DEFAULT_END = "<think>", "</think>"
# The render's own inputs, in llama.cpp (common_chat_template_direct_apply_impl, the extra context
# of its format handlers) and in Hugging Face's apply_chat_template, whose templates these are;
# mr's request fields a template may read under the same name; the renderer's global functions.
# chat_template_kwargs is merged over the inputs, so any of these would replace mr's conversation,
# tools, special tokens or generation prompt with the client's.
RESERVED_KWARGS = frozenset({
    "messages", "tools", "tool_choice", "parallel_tool_calls", "custom_tools", "builtin_tools",
    "documents", "add_generation_prompt", "continue_final_message", "response_format", "json_schema",
    "bos_token", "eos_token", "unk_token", "pad_token",
    "raise_exception", "strftime_now", "range", "dict", "namespace", "loop", "caller",
})


def check_template_kwargs(kwargs: JSON | None) -> None:
    """Refuse chat_template_kwargs keys that would replace the template's own inputs."""
    for key in kwargs or {}:
        if key in RESERVED_KWARGS:
            raise bad(f"chat_template_kwargs.{key}",
                      f"chat_template_kwargs.{key} is an input mr gives the template itself; "
                      "it cannot be set by a request")


def check_kwargs_text(kwargs: JSON | None, guard: SpecialGuard) -> None:
    """Refuse control-token text (`<|im_start|>`, ...) anywhere in chat_template_kwargs: a value
    the template prints would otherwise become real control tokens, a forged turn. Unlike message
    content it cannot be kept as text: the template may use a value anywhere, even in a marker."""
    for key, value in (kwargs or {}).items():
        found = guard.find(key) or guard.find(value)
        if found is not None:
            raise bad(f"chat_template_kwargs.{key}",
                      f"chat_template_kwargs.{key} contains the model's control-token text {found!r}")


def template_inputs(opts: ChatOptions) -> tuple[bool, str]:
    """(enable_thinking, chat_template_kwargs as JSON) for the template."""
    check_template_kwargs(opts.chat_template_kwargs)
    kwargs: JSON = dict(opts.chat_template_kwargs or {})
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
    if not 0 <= opts.reasoning_budget <= INT32_MAX:  # the sampler's count is 32-bit
        raise InvalidArgumentError(f"the reasoning budget must be in [0, {INT32_MAX}]")
    start, ends = rendered.thinking_start_tag, list(rendered.thinking_end_tags)
    if not start and DEFAULT_START in source:  # llama.cpp did not recognise the template's tags
        start, ends = DEFAULT_START, [DEFAULT_END]
    if not start or not ends:
        return {}  # nothing to cap: the template has no thinking block
    return {"reasoning_budget": opts.reasoning_budget, "reasoning_start": start,
            "reasoning_end": [e.strip() or e for e in ends], "reasoning_prefill": rendered.prompt[-256:]}
