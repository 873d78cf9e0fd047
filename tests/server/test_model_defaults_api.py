"""An Ollama model's own defaults (`.params`: num_predict, stop, temperature; `.system`) on every
inference route, through the official clients: applied where a request says nothing, and the
request's own values win.

Three artifacts of one tiny random-weights GGUF are pushed to a real registry (Debian's
docker-registry) and pulled: `plain` (no defaults: the reference), `limits` (num_predict,
temperature 0, a system prompt) and `stops` (stop strings, temperature 0). A request to a model
with defaults must answer exactly as `plain` answers a request that states those values itself
(greedy answers, in the deterministic mode, so equal by construction).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anthropic
import httpx
import ollama
import openai
import pytest

from support.ollama_push import CHATML_GO, layers_for, push
from support.serving import serve_client

SYSTEM = "You answer in one short line."
OTHER = "Reply in French, please, always."
N = 5  # the model's num_predict
STOPS = ["e", "a", "o", " "]  # common enough that a greedy answer of 24 tokens meets one
NEVER = "\x07\x07"
PROMPT = "Tell me about the sea"


@dataclass(frozen=True)
class Answer:
    text: str
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True)
class Ask:
    """What a request says; None: it says nothing."""

    system: str | None = None
    max_tokens: int | None = None
    stop: list[str] | None = None
    temperature: float | None = None


def _given(**fields: Any) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not None}


def _sampling(a: Ask) -> dict[str, Any]:
    """OpenAI's names for what the request says."""
    return _given(max_tokens=a.max_tokens, stop=a.stop, temperature=a.temperature)


@dataclass(frozen=True)
class Clients:
    oai: openai.OpenAI
    claude: anthropic.Anthropic
    llama: ollama.Client


def _chat(c: Clients, model: str, a: Ask) -> Answer:
    messages = ([{"role": "system", "content": a.system}] if a.system else []) + [
        {"role": "user", "content": PROMPT}]
    r = c.oai.chat.completions.create(model=model, messages=messages,  # type: ignore[arg-type]
                                      extra_body={"ignore_eos": True}, **_sampling(a))
    assert r.usage is not None
    return Answer(r.choices[0].message.content or "", r.usage.prompt_tokens, r.usage.completion_tokens)


def _completions(c: Clients, model: str, a: Ask) -> Answer:
    r = c.oai.completions.create(model=model, prompt=PROMPT, extra_body={"ignore_eos": True}, **_sampling(a))
    assert r.usage is not None
    return Answer(r.choices[0].text, r.usage.prompt_tokens, r.usage.completion_tokens)


def _messages(c: Clients, model: str, a: Ask) -> Answer:
    # Anthropic's max_tokens is required: the model's num_predict never applies there. (This SDK
    # version takes no temperature argument: it goes in the body.)
    r = c.claude.messages.create(model=model, max_tokens=a.max_tokens or N,
                                 messages=[{"role": "user", "content": PROMPT}],
                                 extra_body={"ignore_eos": True, **_given(temperature=a.temperature)},
                                 **_given(system=a.system, stop_sequences=a.stop))
    text = "".join(b.text for b in r.content if b.type == "text")
    return Answer(text, r.usage.input_tokens, r.usage.output_tokens)


def _responses(c: Clients, model: str, a: Ask) -> Answer:
    # The Responses API has no stop parameter: the model's stop strings always apply.
    assert a.stop is None
    r = c.oai.responses.create(model=model, input=PROMPT, extra_body={"ignore_eos": True},
                               **_given(instructions=a.system, max_output_tokens=a.max_tokens,
                                        temperature=a.temperature))
    assert r.usage is not None
    return Answer(r.output_text, r.usage.input_tokens, r.usage.output_tokens)


def _options(a: Ask) -> dict[str, Any]:
    return _given(num_predict=a.max_tokens, stop=a.stop, temperature=a.temperature)


def _ollama_chat(c: Clients, model: str, a: Ask) -> Answer:
    messages = ([{"role": "system", "content": a.system}] if a.system else []) + [
        {"role": "user", "content": PROMPT}]
    r = c.llama.chat(model=model, messages=messages, options=_options(a), stream=False)
    return Answer(r.message.content or "", r.prompt_eval_count or 0, r.eval_count or 0)


def _ollama_generate(c: Clients, model: str, a: Ask) -> Answer:
    r = c.llama.generate(model=model, prompt=PROMPT, options=_options(a), stream=False,
                         **_given(system=a.system))
    return Answer(r.response, r.prompt_eval_count or 0, r.eval_count or 0)


Route = Callable[[Clients, str, Ask], Answer]
ROUTES: dict[str, Route] = {"chat": _chat, "completions": _completions, "messages": _messages,
                            "responses": _responses, "ollama_chat": _ollama_chat,
                            "ollama_generate": _ollama_generate}
RAW = {"completions"}  # no chat template: no system prompt either
NO_STOP = {"responses"}


@pytest.fixture(scope="module")
def models(registry, tiny_gguf: Path, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[tuple[Clients, str]]:
    """A server whose store pulled the three artifacts; (clients, the registry's repository)."""
    from mr.store import Store
    from mr.store.pull import pull

    gguf = tiny_gguf.read_bytes()
    repo = f"{registry.host}/library/tiny"
    push(registry.host, "library/tiny", "plain", layers_for(gguf, template=CHATML_GO))
    push(registry.host, "library/tiny", "limits",
         layers_for(gguf, template=CHATML_GO, system=SYSTEM, params={"num_predict": N, "temperature": 0}))
    push(registry.host, "library/tiny", "stops",
         layers_for(gguf, template=CHATML_GO, params={"stop": STOPS, "temperature": 0}))
    root = tmp_path_factory.mktemp("defaults-store")
    for tag in ("plain", "limits", "stops"):
        pull(Store(root), f"{repo}:{tag}")
    home = tmp_path_factory.mktemp("defaults-home")
    with serve_client(root, home, deterministic=True, ctx_size=4096) as http:
        url = str(http.base_url).rstrip("/")
        clients = Clients(openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0, timeout=60),
                          anthropic.Anthropic(base_url=url, api_key="x", max_retries=0, timeout=60),
                          ollama.Client(host=url, timeout=60))
        yield clients, repo


def _cut(text: str) -> str:
    """`text` up to its first stop string, as the engine cuts it."""
    return text[:min((i for i in (text.find(s) for s in STOPS) if i >= 0), default=len(text))]


@pytest.mark.parametrize("route", list(ROUTES))
def test_limit_temperature_and_system_apply_when_unsaid(models: tuple[Clients, str], route: str) -> None:
    clients, repo = models
    ask = ROUTES[route]
    system = None if route in RAW else SYSTEM
    stated = ask(clients, f"{repo}:plain", Ask(system=system, max_tokens=N, temperature=0))
    assert stated.completion_tokens == N
    assert ask(clients, f"{repo}:limits", Ask()) == stated
    # Said by the request: its own system prompt, limit and temperature.
    own = Ask(system=None if route in RAW else OTHER, max_tokens=N + 3, temperature=0)
    assert ask(clients, f"{repo}:limits", own) == ask(clients, f"{repo}:plain", own)


@pytest.mark.parametrize("route", list(ROUTES))
def test_stop_applies_when_unsaid(models: tuple[Clients, str], route: str) -> None:
    clients, repo = models
    ask = ROUTES[route]
    full = ask(clients, f"{repo}:plain", Ask(max_tokens=24, temperature=0))
    assert _cut(full.text) != full.text  # the answer meets a stop: the test can tell
    stopped = ask(clients, f"{repo}:stops", Ask(max_tokens=24))
    assert stopped.text == _cut(full.text) and stopped.completion_tokens < full.completion_tokens
    assert stopped.prompt_tokens == full.prompt_tokens
    if route not in NO_STOP:  # the request's own stop strings replace the model's
        assert ask(clients, f"{repo}:stops", Ask(max_tokens=24, stop=[NEVER])) == full


@pytest.mark.parametrize("route", ["chat", "messages", "ollama_generate"])
def test_the_requests_temperature_wins(models: tuple[Clients, str], route: str) -> None:
    """The model says temperature 0 (greedy); a request at 1 samples: some answer differs."""
    clients, repo = models
    ask = ROUTES[route]
    greedy = ask(clients, f"{repo}:limits", Ask(max_tokens=16))
    sampled = [ask(clients, f"{repo}:limits", Ask(max_tokens=16, temperature=1.0)) for _ in range(4)]
    assert any(s.text != greedy.text for s in sampled)


def test_count_tokens_counts_the_default_system_prompt(models: tuple[Clients, str]) -> None:
    clients, repo = models
    messages: list[anthropic.types.MessageParam] = [{"role": "user", "content": PROMPT}]
    count = clients.claude.messages.count_tokens
    with_default = count(model=f"{repo}:limits", messages=messages).input_tokens
    assert with_default == count(model=f"{repo}:plain", messages=messages, system=SYSTEM).input_tokens
    assert count(model=f"{repo}:limits", messages=messages, system=OTHER).input_tokens == \
        count(model=f"{repo}:plain", messages=messages, system=OTHER).input_tokens


def test_httpx_generate_raw_takes_no_system_prompt(models: tuple[Clients, str]) -> None:
    """Raw /api/generate: the caller wrote the whole prompt; only the sampling defaults apply."""
    _, repo = models
    clients, _ = models
    base = str(clients.oai.base_url).removesuffix("/v1/").removesuffix("/v1")
    body = {"prompt": PROMPT, "raw": True, "stream": False}
    with httpx.Client(base_url=base, timeout=60) as http:
        got = http.post("/api/generate", json={"model": f"{repo}:limits", **body}).json()
        ref = http.post("/api/generate", json={"model": f"{repo}:plain", **body,
                                               "options": {"num_predict": N, "temperature": 0}}).json()
    assert (got["response"], got["prompt_eval_count"], got["eval_count"]) == \
        (ref["response"], ref["prompt_eval_count"], ref["eval_count"])
