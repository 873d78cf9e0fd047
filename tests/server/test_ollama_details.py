"""Ollama details (issue 12 item 9e): `raw` prompts parse special tokens, and fields mr does not
honour are named in a response header instead of being dropped silently."""

from __future__ import annotations

from pathlib import Path

import httpx

from support.serving import SMOL

CHATML = "<|im_start|>user\nSay hi<|im_end|>\n<|im_start|>assistant\n"


def test_raw_prompts_parse_special_tokens(http: httpx.Client, smollm2_path: Path) -> None:
    from mr import _native

    model = _native.Model(str(smollm2_path))
    r = http.post("/api/generate", json={"model": SMOL, "prompt": CHATML, "raw": True, "stream": False,
                                         "options": {"num_predict": 1}})
    assert r.status_code == 200, r.text
    as_markers = len(model.tokenize(CHATML, True, True))
    assert r.json()["prompt_eval_count"] == as_markers < len(model.tokenize(CHATML, True, False))


def test_fields_mr_does_not_honour_are_named(http: httpx.Client) -> None:
    r = http.post("/api/generate", json={
        "model": SMOL, "prompt": "hi", "stream": False, "options": {"num_predict": 1, "num_ctx": 8192},
        "context": [1, 2, 3], "template": "{{ .Prompt }}", "suffix": "end"})
    assert r.status_code == 200, r.text
    assert r.headers["x-mr-ignored-fields"] == "options.num_ctx, context, template, suffix"
    streamed = http.post("/api/chat", json={"model": SMOL, "messages": [{"role": "user", "content": "hi"}],
                                            "options": {"num_predict": 1, "num_ctx": 4096}})
    assert streamed.headers["x-mr-ignored-fields"] == "options.num_ctx"
    plain = http.post("/api/generate", json={"model": SMOL, "prompt": "hi", "stream": False,
                                             "options": {"num_predict": 1}})
    assert "x-mr-ignored-fields" not in plain.headers
