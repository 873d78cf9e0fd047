"""Ollama requests -> engine arguments; engine results -> Ollama response pieces."""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone

from mr.engine import SamplingOptions, ToolCall
from mr.engine.limits import INT32_MAX
from mr.jsontypes import JSON
from mr.runner import parse_duration
from mr.server.errors import invalid
from mr.server.generation import media, sampling_fields, seeded
from mr.server.ollama.protocol import Format, KeepAlive, Message, Options, Timings


def now_rfc3339() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


def rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat().replace("+00:00", "Z")


def keep_alive(value: KeepAlive) -> float | None:
    return parse_duration(value, "keep_alive")


def sampling(options: Options | None) -> tuple[SamplingOptions, int, list[str]]:
    """(sampling, max_tokens (-1: no limit), stop strings)."""
    if options is None:
        return SamplingOptions(), -1, []
    fields = seeded(sampling_fields(options), options.seed)
    if options.repeat_last_n is not None:
        fields["penalty_last_n"] = max(options.repeat_last_n, 0)
    for name in ("num_predict", "top_k", "repeat_last_n"):
        value = getattr(options, name)
        if value is not None and abs(value) > INT32_MAX:  # the engine's counts are 32-bit
            raise invalid(f"options.{name}", f"options.{name} must be at most {INT32_MAX}")
    limit = options.num_predict if options.num_predict and options.num_predict > 0 else -1
    stops = [s for s in options.stop or [] if s]
    return SamplingOptions(**fields), limit, stops


def response_format(fmt: Format) -> JSON | None:
    if fmt is None or fmt == "":
        return None
    if fmt == "json":
        return {"type": "json_object"}
    if isinstance(fmt, dict):
        return {"type": "json_schema", "json_schema": {"name": "response", "schema": fmt, "strict": True}}
    raise invalid("format", 'format must be "json" or a JSON schema object')


def messages(items: list[Message]) -> list[JSON]:
    out = []
    for i, m in enumerate(items):
        msg: JSON = {"role": m.role, "content": with_images(m.content, m.images, f"messages[{i}].images")}
        if m.tool_calls:
            msg["tool_calls"] = [
                {"id": f"call_{i}_{j}", "type": "function",
                 "function": {"name": c.function.name, "arguments": json.dumps(c.function.arguments)}}
                for j, c in enumerate(m.tool_calls)
            ]
        if m.tool_name:
            msg["name"] = m.tool_name
        out.append(msg)
    return out


def with_images(text: str, images: list[str] | None, field: str) -> str | list[JSON]:
    """A message's content with its `images` (base64 strings) before its text, where Ollama's
    own prompt puts them; each image's refusals name `field[k]`."""
    if not images:
        return text
    parts = [media.base64_part("image", data, f"{field}[{k}]") for k, data in enumerate(images)]
    return [*parts, media.text_part(text)]


def tool_calls(calls: list[ToolCall]) -> list[JSON]:
    out = []
    for c in calls:
        try:
            args = json.loads(c.arguments) if c.arguments else {}
        except json.JSONDecodeError:
            args = {"arguments": c.arguments}
        out.append({"function": {"name": c.name, "arguments": args if isinstance(args, dict) else {}}})
    return out


def done_reason(raw: str | None) -> str:
    return "length" if raw == "length" else "stop"


class Clock:
    """Ollama's timing fields (nanoseconds) for one request."""

    def __init__(self) -> None:
        self.start = time.perf_counter_ns()
        self.loaded = self.start
        self.first: int | None = None

    def mark_loaded(self) -> None:
        self.loaded = time.perf_counter_ns()

    def token(self) -> None:
        if self.first is None:
            self.first = time.perf_counter_ns()

    def timings(self, prompt_tokens: int, generated: int) -> Timings:
        end = time.perf_counter_ns()
        first = self.first or end
        return Timings(total_duration=end - self.start, load_duration=self.loaded - self.start,
                       prompt_eval_count=prompt_tokens, prompt_eval_duration=first - self.loaded,
                       eval_count=generated, eval_duration=end - first)
