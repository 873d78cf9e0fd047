"""Token counts from a response's tail: OpenAI `usage`, Ollama's eval counts, Anthropic's."""

from __future__ import annotations

import msgspec


def _counts(obj: object) -> tuple[int | None, int | None] | None:
    if not isinstance(obj, dict):
        return None
    usage = obj.get("usage")
    if isinstance(usage, dict):
        prompt = usage.get("prompt_tokens", usage.get("input_tokens"))
        completion = usage.get("completion_tokens", usage.get("output_tokens"))
        return prompt, completion
    if "eval_count" in obj or "prompt_eval_count" in obj:
        return obj.get("prompt_eval_count"), obj.get("eval_count")
    return None


def _candidates(tail: bytes, content_type: str) -> list[bytes]:
    """The JSON documents at the end of the body, last first."""
    if content_type.startswith("text/event-stream"):
        lines = [line[5:].strip() for line in tail.split(b"\n") if line.startswith(b"data:")]
        return [line for line in reversed(lines) if line.startswith(b"{")]
    if content_type.startswith("application/x-ndjson"):
        return [line for line in reversed(tail.split(b"\n")) if line.strip().startswith(b"{")]
    return [tail]


def token_counts(tail: bytes, content_type: str) -> tuple[int | None, int | None]:
    for doc in _candidates(tail, content_type):
        try:
            found = _counts(msgspec.json.decode(doc))
        except (msgspec.DecodeError, RecursionError):
            continue
        if found is not None:
            return found
    return None, None
