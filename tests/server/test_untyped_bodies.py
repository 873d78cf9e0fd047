"""Ollama's clients may POST a JSON body with no Content-Type at all (litellm's `ollama` and
`ollama_chat` providers do), and Ollama answers them: so does mr, on Ollama's inference routes
(issue 29). Everywhere else a typeless body stays a 415: a cross-site page can send one without a
preflight, and the state-changing routes must not read it (RELIABILITY.md 17)."""

from __future__ import annotations

import os

import httpx
import pytest

from support.serving import SMOL

# litellm fetches its model price list from the network at import unless told to use its own copy
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
import litellm

MESSAGES = [{"role": "user", "content": "Say hi"}]
BODY = b'{"model": "ai/smollm2", "name": "ai/smollm2"}'
# State-changing POSTs (those that do nothing harmful should the check fail: no purge, no push),
# and routes whose clients always declare JSON.
STRICT = ["/api/pull", "/engines/configure", "/engines/_configure", "/engines/unload", "/models/create",
          "/models/ai/smollm2/tag", "/v1/responses", "/v1/chat/completions", "/v1/messages", "/api/show"]


@pytest.mark.parametrize("provider", ["ollama_chat", "ollama"])
def test_litellm_ollama_providers(base_url: str, provider: str) -> None:
    answer = litellm.completion(model=f"{provider}/{SMOL}", api_base=base_url, messages=MESSAGES,
                                max_tokens=4, temperature=0)
    assert answer.choices[0].message.content  # type: ignore[union-attr]
    assert answer.usage.completion_tokens > 0  # type: ignore[attr-defined]


def test_litellm_ollama_streams(base_url: str) -> None:
    chunks = litellm.completion(model=f"ollama_chat/{SMOL}", api_base=base_url, messages=MESSAGES,
                                max_tokens=4, temperature=0, stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in chunks)  # type: ignore[union-attr]
    assert text


@pytest.mark.parametrize("route", ["/api/chat", "/api/generate", "/api/embed", "/api/embeddings"])
def test_typeless_json_on_ollama_inference_routes(http: httpx.Client, route: str) -> None:
    body = {"model": SMOL, "messages": MESSAGES, "prompt": "Say hi", "input": "hi", "stream": False,
            "options": {"num_predict": 2}}
    r = http.post(route, content=httpx.Request("POST", "/", json=body).content)  # no Content-Type
    assert r.status_code == 200, r.text
    typed_wrong = http.post(route, content=b"{}", headers={"Content-Type": "text/plain"})
    assert typed_wrong.status_code == 415  # a declared non-JSON type is refused as before


@pytest.mark.parametrize("route", STRICT)
def test_typeless_bodies_elsewhere_get_415(http: httpx.Client, route: str) -> None:
    r = http.post(route, content=BODY)
    assert "content-type" not in r.request.headers
    assert r.status_code == 415, r.text
    assert "must be JSON" in r.text
