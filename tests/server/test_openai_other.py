"""/v1/completions, /v1/embeddings and /v1/models with the openai client, and the DMR prefixes."""

from __future__ import annotations

import base64

import httpx
import numpy as np
import openai
import pytest

from support.serving import SMOL
from support.sse import parse_sse


def test_completion_non_streamed_and_streamed_agree(det_oai) -> None:
    args = dict(model=SMOL, prompt="The capital of France is", max_tokens=8, temperature=0)
    r = det_oai.completions.create(**args)
    assert r.object == "text_completion" and r.choices[0].text
    assert r.usage.completion_tokens > 0
    joined = "".join(c.choices[0].text for c in det_oai.completions.create(stream=True, **args) if c.choices)
    assert joined == r.choices[0].text


def test_completion_echo_logprobs_and_batches(oai) -> None:
    prompt = "The capital of France is"
    r = oai.completions.create(model=SMOL, prompt=prompt, max_tokens=4, temperature=0, echo=True, logprobs=2)
    choice = r.choices[0]
    assert choice.text.startswith(prompt)
    assert len(choice.logprobs.tokens) == r.usage.completion_tokens
    assert all(len(t) == 2 for t in choice.logprobs.top_logprobs)
    assert choice.logprobs.text_offset[0] == len(prompt)
    batch = oai.completions.create(model=SMOL, prompt=["One,", "Two,"], max_tokens=3, temperature=0, n=2)
    assert [c.index for c in batch.choices] == [0, 1, 2, 3]
    tokens = oai.completions.create(model=SMOL, prompt=[504, 3458], max_tokens=3, temperature=0)
    assert tokens.usage.prompt_tokens == 2


def test_completion_options_that_cannot_be_honoured_are_refused(oai) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        oai.completions.create(model=SMOL, prompt="x", max_tokens=2, suffix="y")
    assert info.value.body["param"] == "suffix"
    with pytest.raises(openai.BadRequestError) as info:
        oai.completions.create(model=SMOL, prompt="x", max_tokens=2, best_of=3)
    assert info.value.body["param"] == "best_of"


def test_completion_stream_include_usage(http: httpx.Client) -> None:
    r = http.post("/v1/completions", json={"model": SMOL, "prompt": "Hello", "max_tokens": 4, "stream": True,
                                           "stream_options": {"include_usage": True}})
    payloads, done = parse_sse(r.content)
    assert done and payloads[-1]["choices"] == [] and payloads[-1]["usage"]["completion_tokens"] > 0


def test_embeddings_float_base64_and_dimensions(oai) -> None:
    r = oai.embeddings.create(model=SMOL, input=["hello world", "goodbye"])
    assert [d.index for d in r.data] == [0, 1]
    first = np.array(r.data[0].embedding)
    assert abs(np.linalg.norm(first) - 1) < 1e-3
    assert r.usage.prompt_tokens > 0
    b64 = oai.embeddings.create(model=SMOL, input="hello world", encoding_format="base64")
    decoded = np.frombuffer(base64.b64decode(b64.data[0].embedding), dtype="<f4")
    assert np.allclose(decoded, first, atol=1e-5)
    short = oai.embeddings.create(model=SMOL, input="hello world", dimensions=8)
    assert len(short.data[0].embedding) == 8
    assert abs(np.linalg.norm(short.data[0].embedding) - 1) < 1e-3


def test_embeddings_of_token_ids_and_errors(oai) -> None:
    r = oai.embeddings.create(model=SMOL, input=[[504, 3458], [504]])
    assert len(r.data) == 2
    with pytest.raises(openai.BadRequestError) as info:
        oai.embeddings.create(model=SMOL, input="x", dimensions=100000)
    assert info.value.body["param"] == "dimensions"
    with pytest.raises(openai.BadRequestError) as info:
        oai.embeddings.create(model=SMOL, input=[])
    assert info.value.body["param"] == "input"


def test_models_list_and_retrieve(oai) -> None:
    ids = [m.id for m in oai.models.list()]
    assert "ai/smollm2" in ids and "ai/tiny" in ids
    assert oai.models.retrieve("ai/smollm2").id == "ai/smollm2"
    with pytest.raises(openai.NotFoundError) as info:
        oai.models.retrieve("ai/does-not-exist")
    assert info.value.body["code"] == "model_not_found"


@pytest.mark.parametrize("prefix", ["/engines/v1", "/engines/llama.cpp/v1"])
def test_docker_model_runner_prefixes(base_url: str, prefix: str) -> None:
    client = openai.OpenAI(base_url=base_url + prefix, api_key="x", max_retries=0)
    r = client.chat.completions.create(model=SMOL, messages=[{"role": "user", "content": "hi"}], max_tokens=2)
    assert r.choices[0].message.content is not None
    assert any(m.id == "ai/smollm2" for m in client.models.list())


def test_unknown_model_is_404_on_every_inference_route(http: httpx.Client) -> None:
    for path, body in [("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}]}),
                       ("/v1/completions", {"prompt": "x"}), ("/v1/embeddings", {"input": "x"})]:
        r = http.post(path, json={"model": "ai/not-here", **body})
        assert r.status_code == 404, (path, r.text)
        assert r.json()["error"]["code"] == "model_not_found"
