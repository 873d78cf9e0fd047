"""Engine results -> OpenAI response parts (usage, logprobs, tool calls, ids)."""

from __future__ import annotations

import os
from collections.abc import Sequence

from mr.engine import TokenLogprob, ToolCall, ToolCallDelta, Usage
from mr.server.openai.protocol import (
    CompletionTokensDetails,
    FunctionOut,
    LogprobOut,
    PromptTokensDetails,
    ToolCallDeltaFunction,
    ToolCallDeltaOut,
    ToolCallOut,
    TopLogprobOut,
    UsageOut,
)


def new_id(prefix: str) -> str:
    return f"{prefix}-{os.urandom(12).hex()}"


def finish_reason(raw: str | None) -> str:
    # "cancelled" only reaches a client when the server ends its stream (shutdown).
    return raw if raw in ("stop", "length", "tool_calls", "content_filter") else "stop"


def usage(usages: Sequence[Usage]) -> UsageOut:
    """One prompt (counted once, as OpenAI does for n > 1) and every choice's completion."""
    first = usages[0] if usages else Usage()
    completion = sum(u.completion_tokens for u in usages)
    details = CompletionTokensDetails(
        accepted_prediction_tokens=sum(u.accepted_prediction_tokens for u in usages),
        rejected_prediction_tokens=sum(u.rejected_prediction_tokens for u in usages))
    return UsageOut(prompt_tokens=first.prompt_tokens, completion_tokens=completion,
                    total_tokens=first.prompt_tokens + completion,
                    prompt_tokens_details=PromptTokensDetails(cached_tokens=first.cached_tokens),
                    completion_tokens_details=details)


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


def logprobs(items: Sequence[TokenLogprob]) -> list[LogprobOut]:
    return [
        LogprobOut(token=_text(t.text), logprob=t.logprob, bytes=list(t.text),
                   top_logprobs=[TopLogprobOut(token=_text(a.text), logprob=a.logprob, bytes=list(a.text))
                                 for a in t.top])
        for t in items
    ]


def tool_calls(calls: Sequence[ToolCall]) -> list[ToolCallOut] | None:
    if not calls:
        return None
    return [ToolCallOut(id=c.id, function=FunctionOut(name=c.name, arguments=c.arguments)) for c in calls]


def tool_call_deltas(deltas: Sequence[ToolCallDelta]) -> list[ToolCallDeltaOut] | None:
    if not deltas:
        return None
    return [
        ToolCallDeltaOut(index=d.index, id=d.id, type="function" if d.id else None,
                         function=ToolCallDeltaFunction(name=d.name, arguments=d.arguments))
        for d in deltas
    ]
