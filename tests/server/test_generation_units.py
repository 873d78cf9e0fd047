"""The shared submission path's request side (mr.server.generation), without a model: every API's
body becomes the same engine arguments for the same request."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from mr.engine import ChatOptions, SamplingOptions
from mr.server.anthropic import convert as anthropic
from mr.server.anthropic.protocol import MessagesRequest
from mr.server.generation import Prepared, Text, sampling_of, tool_options
from mr.server.ollama.convert import sampling as ollama_sampling
from mr.server.ollama.protocol import Options
from mr.server.openai import params
from mr.server.openai.protocol import ChatCompletionRequest
from mr.server.responses import convert as responses
from mr.server.responses.output import Skeleton
from mr.server.responses.protocol import ResponseRequest

SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}}
OPENAI_TOOL = {"type": "function",
               "function": {"name": "get_weather", "description": "", "parameters": SCHEMA}}
USER = [{"role": "user", "content": "Weather in Paris?"}]


def _openai(**extra: Any) -> ChatOptions | None:
    body = {"model": "m", "messages": USER, "tools": [OPENAI_TOOL], "tool_choice": "required", **extra}
    return params.chat_options(msgspec.convert(body, ChatCompletionRequest))


def _anthropic(kind: str = "any", **choice: Any) -> ChatOptions | None:
    body = {"model": "m", "max_tokens": 10, "messages": USER, "tool_choice": {"type": kind, **choice},
            "tools": [{"name": "get_weather", "description": "", "input_schema": SCHEMA}]}
    return anthropic.options(msgspec.convert(body, MessagesRequest))


def _responses(**extra: Any) -> ChatOptions | None:
    body = {"model": "m", "input": "Weather in Paris?", "tool_choice": "required", **extra,
            "tools": [{"type": "function", "name": "get_weather", "description": "", "parameters": SCHEMA}]}
    return responses.options(msgspec.convert(body, ResponseRequest))


@pytest.mark.parametrize(("options", "parallel"), [
    (_openai(), False), (_openai(parallel_tool_calls=False), False),
    (_openai(parallel_tool_calls=True), True),
    (_anthropic(), False), (_anthropic(disable_parallel_tool_use=True), False),
    (_anthropic(disable_parallel_tool_use=False), True),
    (_responses(), False), (_responses(parallel_tool_calls=False), False),
    (_responses(parallel_tool_calls=True), True),
    (tool_options([OPENAI_TOOL], None, None), False),  # Ollama's /api/chat cannot say
])
def test_several_calls_only_where_the_request_asks_in_every_api(options: ChatOptions | None,
                                                                 parallel: bool) -> None:
    assert options is not None and options.tools and options.parallel_tool_calls is parallel


def test_a_forced_call_is_the_same_options_in_every_api() -> None:
    assert _openai() == _anthropic() == _responses()
    named = {"type": "function", "function": {"name": "get_weather"}}
    assert _openai(tool_choice=named) == _anthropic("tool", name="get_weather") \
        == _responses(tool_choice={"type": "function", "name": "get_weather"})


def test_the_response_object_reports_the_applied_parallel_setting() -> None:
    unsaid = ResponseRequest(model="m", input="hi")
    assert Skeleton(unsaid).response("completed", [])["parallel_tool_calls"] is False
    asked = ResponseRequest(model="m", input="hi", parallel_tool_calls=True)
    assert Skeleton(asked).response("completed", [])["parallel_tool_calls"] is True


def test_no_tools_and_no_format_is_no_options() -> None:
    assert tool_options(None, "auto", True) is None and tool_options([], "none", None) is None
    fmt = {"type": "json_object"}
    assert tool_options(None, None, None, fmt) == ChatOptions(response_format=fmt)


def test_sampling_fields_read_alike_from_every_body() -> None:
    openai_body = msgspec.convert({"model": "m", "messages": USER, "temperature": 0.5, "top_k": 3, "seed": 7},
                                  ChatCompletionRequest)
    ollama_options = Options(temperature=0.5, top_k=3, seed=7)
    assert params.sampling(openai_body, 100) == ollama_sampling(ollama_options)[0]
    assert params.sampling(openai_body, 100, 2).seed == 9  # choice 2: seed + 2
    anthropic_body = msgspec.convert({"model": "m", "max_tokens": 5, "messages": USER, "temperature": 0.5,
                                      "top_k": 3}, MessagesRequest)
    assert sampling_of(anthropic_body) == SamplingOptions(temperature=0.5, top_k=3)


def test_text_prompts_count_their_streams_before_tokenizing() -> None:
    prep = Prepared(model="m", input=Text(lambda llm: [], count=3), n=2)
    assert prep.n_streams == 6
