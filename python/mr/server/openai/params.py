"""Request fields -> engine arguments, each check naming the OpenAI `param` it concerns."""

from __future__ import annotations

import msgspec

from mr.engine import ChatOptions, SamplingOptions
from mr.engine.limits import INT32_MAX
from mr.jsontypes import JSON
from mr.server.errors import invalid
from mr.server.generation import checked_text, media, sampling_fields, seeded, tool_options
from mr.server.openai.protocol import ChatCompletionRequest, ChatMessageIn, ContentPart, SamplingFields

MEDIA_PARTS = ("image_url", "input_audio")


def sampling(req: SamplingFields, n_vocab: int, index: int = 0) -> SamplingOptions:
    """The sampling of choice `index` (seed + index when a seed is given)."""
    fields = seeded(sampling_fields(req), req.seed, index)
    if req.logit_bias:
        fields["logit_bias"] = logit_bias(req.logit_bias, n_vocab)
    return SamplingOptions(**fields)


def logit_bias(raw: dict[str, float], n_vocab: int) -> dict[int, float]:
    out: dict[int, float] = {}
    for key, bias in raw.items():
        try:
            token = int(key)
        except ValueError:
            raise invalid("logit_bias", f"logit_bias keys must be token ids, got {key!r}") from None
        if not 0 <= token < n_vocab:
            raise invalid("logit_bias", f"logit_bias token id {token} is not in [0, {n_vocab})")
        out[token] = bias
    return out


def max_tokens(req: SamplingFields, *names: str) -> int:
    """The first of `names` that is set (max_completion_tokens wins over max_tokens); -1: no limit."""
    for name in names:
        value = getattr(req, name, None)
        if value is None:
            continue
        if value == 0 or value < -1 or value > INT32_MAX:
            raise invalid(name, f"{name} must be in [1, {INT32_MAX}] (or -1 for no limit)")
        return int(value)
    return -1


def stops(stop: str | list[str] | None) -> list[str]:
    if stop is None:
        return []
    items = [stop] if isinstance(stop, str) else stop
    if any(not s for s in items):
        raise invalid("stop", "stop sequences must not be empty")
    return [checked_text(s, "stop") for s in items]


def messages(items: list[ChatMessageIn]) -> list[JSON]:
    """OpenAI messages -> the engine's (developer -> system). A user message's image_url and
    input_audio parts become media parts (mr.server.generation.media), decoded later."""
    return [_message(i, m) for i, m in enumerate(items)]


def _message(i: int, m: ChatMessageIn) -> JSON:
    param = f"messages[{i}].content"
    body = _user_content(m.content, param) if m.role == "user" else _content(m.content, param)
    out: JSON = {"role": "system" if m.role == "developer" else m.role, "content": body}
    if m.name:
        out["name"] = m.name
    if m.tool_calls:
        out["tool_calls"] = [
            {"id": c.id or f"call_{i}_{j}", "type": "function",
             "function": {"name": c.function.name, "arguments": c.function.arguments}}
            for j, c in enumerate(m.tool_calls)
        ]
    if m.tool_call_id:
        out["tool_call_id"] = m.tool_call_id
    if m.reasoning_content:
        out["reasoning_content"] = m.reasoning_content
    return out


def _content(content: str | list[ContentPart] | None, param: str) -> str:
    """Text only: a system, assistant or tool message, a prediction."""
    if content is None:
        return ""
    if isinstance(content, str):
        return checked_text(content, param)
    texts = []
    for j, part in enumerate(content):
        if part.type in MEDIA_PARTS:
            raise invalid(f"{param}[{j}]", f"{param}[{j}]: {part.type} parts are accepted in user "
                                           "messages only")
        texts.append(_text(part, param))
    return "\n".join(texts)


def _user_content(content: str | list[ContentPart] | None, param: str) -> str | list[JSON]:
    """Text, or text and media parts in the order written."""
    if content is None or isinstance(content, str):
        return _content(content, param)
    return media.content([_part(part, f"{param}[{j}]", param) for j, part in enumerate(content)])


def _part(part: ContentPart, field: str, param: str) -> JSON:
    if part.type == "image_url" and part.image_url is not None:
        url = part.image_url if isinstance(part.image_url, str) else part.image_url.url
        return media.url_part("image", url, field)
    if part.type == "input_audio" and part.input_audio is not None:
        return media.audio_part(part.input_audio.data, part.input_audio.format, field)
    if part.type in MEDIA_PARTS:
        raise invalid(field, f"{field}: a {part.type} part needs its {part.type} field")
    return media.text_part(_text(part, param))


def _text(part: ContentPart, param: str) -> str:
    if part.type != "text" or part.text is None:
        raise invalid(param, f"{param}: only text, image_url and input_audio parts are supported, "
                             f"not {part.type!r}")
    return checked_text(part.text, param)


def prediction(req: ChatCompletionRequest) -> str | None:
    """The predicted answer's text (Predicted Outputs), or None."""
    return None if req.prediction is None else _content(req.prediction.content, "prediction.content")


def chat_options(req: ChatCompletionRequest) -> ChatOptions | None:
    tools = [msgspec.to_builtins(t) for t in req.tools] if req.tools else None
    choice = req.tool_choice
    tool_choice: str | JSON | None = None
    if isinstance(choice, str):
        tool_choice = choice
        if choice == "required" and not tools:
            raise invalid("tool_choice", 'tool_choice "required" needs tools')
    elif choice is not None:
        names = {t.function.name for t in req.tools or []}
        if choice.function.name not in names:
            raise invalid("tool_choice", f"tool_choice names {choice.function.name!r}, which is not in tools")
        tool_choice = msgspec.to_builtins(choice)
    fmt = req.response_format
    if fmt is not None and fmt.type == "json_schema" and (fmt.json_schema is None
                                                          or fmt.json_schema.schema is None):
        raise invalid("response_format", "response_format json_schema needs json_schema.schema")
    response_format = msgspec.to_builtins(fmt) if fmt is not None and fmt.type != "text" else None
    return tool_options(tools, tool_choice, req.parallel_tool_calls, response_format)


def top_logprobs(req: ChatCompletionRequest) -> int | None:
    """The engine's `logprobs` argument: None (off), 0 (chosen tokens only) or N alternatives."""
    if req.top_logprobs is not None and not req.logprobs:
        raise invalid("top_logprobs", "top_logprobs needs logprobs set to true")
    if not req.logprobs:
        return None
    return req.top_logprobs or 0
