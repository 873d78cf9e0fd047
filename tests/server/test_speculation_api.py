"""Speculative decoding through the server (issue 27): OpenAI's Predicted Outputs
(`prediction`, usage.completion_tokens_details), the `--spec` switches, and the counts in
/metrics and /engines/ps. The server runs in the deterministic mode with every draft taken
(`spec="ngram"`), so an answer with a prediction must be the answer without one, token for token."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import click
import httpx
import openai
import pytest

from support.serving import SMOL, serve_client

SOURCE = "\n".join(f"def step_{i}(x):\n    return x * {i} + {i * i}\n" for i in range(8))
ASK = [{"role": "user", "content": "Repeat this code exactly, with nothing else:\n\n" + SOURCE}]


@pytest.fixture(scope="module")
def sc(store_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    with serve_client(store_root, tmp_path_factory.mktemp("spec-home"), deterministic=True, spec="ngram",
                      ctx_size=8192) as client:
        yield client


@pytest.fixture(scope="module")
def oai(sc: httpx.Client) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{sc.base_url}/v1", api_key="none")


def _ask(oai: openai.OpenAI, **extra: object):
    return oai.chat.completions.create(model=SMOL, messages=ASK, temperature=0, max_tokens=80,  # type: ignore[arg-type]
                                       **extra)


def test_a_prediction_is_kept_and_counted_as_openai_does(oai: openai.OpenAI) -> None:
    plain = _ask(oai)
    answer = plain.choices[0].message.content or ""
    assert plain.usage is not None and plain.usage.completion_tokens_details is not None
    assert plain.usage.completion_tokens_details.accepted_prediction_tokens == 0
    predicted = _ask(oai, prediction={"type": "content", "content": answer})
    assert predicted.choices[0].message.content == answer
    details = predicted.usage.completion_tokens_details if predicted.usage else None
    assert details is not None and details.accepted_prediction_tokens > 20, details
    assert predicted.usage is not None and predicted.usage.completion_tokens == plain.usage.completion_tokens


def test_text_parts_and_a_wrong_prediction(oai: openai.OpenAI) -> None:
    answer = _ask(oai).choices[0].message.content or ""
    wrong = SOURCE.replace("return", "yield")
    reply = _ask(oai, prediction={"type": "content", "content": [{"type": "text", "text": wrong}]})
    assert reply.choices[0].message.content == answer  # the model's own answer all the same
    details = reply.usage.completion_tokens_details if reply.usage else None
    assert details is not None and details.rejected_prediction_tokens > 0, details


def test_a_streamed_answer_reports_the_prediction_in_its_usage(oai: openai.OpenAI) -> None:
    answer = _ask(oai).choices[0].message.content or ""
    chunks = list(_ask(oai, prediction={"type": "content", "content": answer}, stream=True,
                       stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    usage = chunks[-1].usage
    assert text == answer
    assert usage is not None and usage.completion_tokens_details is not None
    assert usage.completion_tokens_details.accepted_prediction_tokens > 20


def test_a_prediction_that_is_not_text_is_refused(sc: httpx.Client) -> None:
    body = {"model": SMOL, "messages": ASK, "max_tokens": 4,
            "prediction": {"type": "content", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}}
    reply = sc.post("/v1/chat/completions", json=body)
    assert reply.status_code == 400 and "prediction.content" in reply.text
    body["prediction"] = {"type": "file", "content": "x"}
    assert sc.post("/v1/chat/completions", json=body).status_code in (400, 422)


def test_metrics_and_ps_count_drafts(oai: openai.OpenAI, sc: httpx.Client) -> None:
    _ask(oai)  # n-gram drafts: the answer copies the prompt
    ps = [m for m in sc.get("/engines/ps").json() if any(SMOL in tag for tag in m["tags"])]
    assert ps and ps[0]["spec_accepted"] > 0 and ps[0]["spec_drafted"] >= ps[0]["spec_accepted"]
    metrics = sc.get("/metrics").text
    drafted = [line for line in metrics.splitlines() if line.startswith("mr_spec_drafted_tokens_total{")]
    assert drafted and float(drafted[0].rsplit(" ", 1)[1]) >= ps[0]["spec_drafted"]
    defaults = sc.get("/engines/status").json()["defaults"]
    assert (defaults["spec"], defaults["spec_max"]) == ("ngram", 64)


def test_the_switches() -> None:
    from mr.cli.serve import _settings, serve
    from mr.server import Settings
    from mr.server.app import runner_config

    assert Settings.from_env({}).spec == "auto" and Settings.from_env({}).spec_max == 64
    assert Settings.from_env({"MR_SPEC": "off"}).spec == "off"
    settings = _settings({"spec": "off", "spec_max": 3})  # --spec-max has no variable
    assert (runner_config(settings).engine.spec, runner_config(settings).engine.spec_max) == ("off", 3)
    with pytest.raises(ValueError, match="MR_SPEC"):
        Settings.from_env({"MR_SPEC": "always"})
    with pytest.raises(click.BadParameter, match="0<=x<=64"):
        serve.make_context("mr serve", ["--spec-max", "65"])


def test_a_draft_model_by_store_name(store_root: Path, tmp_path_factory: pytest.TempPathFactory,
                                     oai: openai.OpenAI, sc: httpx.Client) -> None:
    # `mr serve --draft-model ai/tiny`: the tiny random model (SmolLM2's tokenizer) drafts; its
    # drafts are poor, the answer is still SmolLM2's own, and the memory budget counts it.
    expected = _ask(oai).choices[0].message.content
    plain = next(m for m in sc.get("/engines/ps").json() if any(SMOL in tag for tag in m["tags"]))
    with serve_client(store_root, tmp_path_factory.mktemp("draft-home"), deterministic=True, spec="ngram",
                      ctx_size=8192, draft_model="ai/tiny") as client:
        drafted = openai.OpenAI(base_url=f"{client.base_url}/v1", api_key="none")
        assert _ask(drafted).choices[0].message.content == expected
        [model] = [m for m in client.get("/engines/ps").json() if any(SMOL in tag for tag in m["tags"])]
        assert model["spec_drafted"] > model["spec_accepted"]
        assert model["memory"] > plain["memory"]
