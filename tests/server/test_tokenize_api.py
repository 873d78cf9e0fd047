"""llama-server's /tokenize, /detokenize and /apply-template (also under /engines/...)."""

from __future__ import annotations

import httpx
import pytest

from support.serving import TINY

PREFIXES = ["", "/engines", "/engines/llama.cpp"]


@pytest.mark.parametrize("prefix", PREFIXES)
def test_round_trip(http: httpx.Client, prefix: str) -> None:
    text = "Hello, world! Ünïcödé and emoji 🎉"
    r = http.post(f"{prefix}/tokenize", json={"model": TINY, "content": text})
    assert r.status_code == 200, r.text
    tokens = r.json()["tokens"]
    assert tokens and all(isinstance(t, int) for t in tokens)
    back = http.post(f"{prefix}/detokenize", json={"model": TINY, "tokens": tokens})
    assert back.status_code == 200, back.text
    assert back.json()["content"] == text


def test_pieces_special_tokens_and_add_special(http: httpx.Client) -> None:
    r = http.post("/tokenize", json={"model": TINY, "content": "<|im_start|>hi there", "with_pieces": True})
    pieces = r.json()["tokens"]
    assert pieces[0]["piece"] == "<|im_start|>"  # parsed as one special token
    assert "".join(p["piece"] for p in pieces if isinstance(p["piece"], str)) == "<|im_start|>hi there"
    split = http.post("/tokenize", json={"model": TINY, "content": "<|im_start|>", "parse_special": False})
    assert len(split.json()["tokens"]) > 1
    emoji = http.post("/tokenize", json={"model": TINY, "content": "🎉", "with_pieces": True})
    emoji = emoji.json()["tokens"]
    assert all(isinstance(p["piece"], (str, list)) for p in emoji)
    plain = http.post("/tokenize", json={"model": TINY, "content": "hi"}).json()["tokens"]
    special = http.post("/tokenize", json={"model": TINY, "content": "hi", "add_special": True})
    special = special.json()["tokens"]
    assert len(special) >= len(plain)


def test_apply_template_renders_the_prompt(http: httpx.Client) -> None:
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hi"}]
    r = http.post("/apply-template", json={"model": TINY, "messages": messages})
    assert r.status_code == 200, r.text
    prompt = r.json()["prompt"]
    assert "Be brief." in prompt and "Say hi" in prompt
    assert prompt.rstrip().endswith("assistant")  # SmolLM2's ChatML opens the assistant turn
    same = http.post("/engines/apply-template", json={"model": TINY, "messages": messages}).json()
    assert same["prompt"] == prompt


def test_bad_input_is_a_clear_400(http: httpx.Client) -> None:
    r = http.post("/detokenize", json={"model": TINY, "tokens": [10**9]})
    assert r.status_code == 400 and r.json()["error"]["param"] == "tokens"
    assert http.post("/tokenize", json={"model": TINY}).status_code == 400
    assert http.post("/apply-template", json={"model": TINY, "messages": []}).status_code == 400
    assert http.post("/tokenize", json={"model": "ai/nope", "content": "x"}).status_code == 404
