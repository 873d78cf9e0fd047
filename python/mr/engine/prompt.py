"""Tokenizing a rendered chat prompt without letting user text become control tokens.

The rendered prompt is tokenized with special-token parsing on, since the template's own
markers (`<|im_start|>`, ...) must become their tokens. A message that itself contains such
marker text would then inject real control tokens (a fake turn boundary). Such contents are cut
out of the prompt and tokenized as plain text; everything else is tokenized as a whole, so a
normal prompt gets exactly llama-server's tokens.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mr import _native


def chat_prompt_tokens(model: _native.Model, prompt: str, messages: list[dict[str, Any]]) -> np.ndarray:
    risky = [text for text in _contents(messages) if _has_special_text(model, text)]
    if not risky:
        return model.tokenize(prompt, True, True)
    pieces: list[np.ndarray] = []
    start, first = 0, True
    for text in risky:
        at = prompt.find(text, start)
        if at < 0:
            continue  # the template changed the text; nothing to protect verbatim
        pieces.append(model.tokenize(prompt[start:at], first, True))
        pieces.append(model.tokenize(text, False, False))
        start, first = at + len(text), False
    pieces.append(model.tokenize(prompt[start:], first, True))
    return np.concatenate(pieces).astype(np.int32)


def _has_special_text(model: _native.Model, text: str) -> bool:
    if "<" not in text and "[" not in text:  # every common marker syntax starts with one of these
        return False
    plain = model.tokenize(text, False, False)
    parsed = model.tokenize(text, False, True)
    return len(plain) != len(parsed) or bool((plain != parsed).any())


def _contents(messages: list[dict[str, Any]]) -> list[str]:
    out = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, str):
            out.append(content)
        elif isinstance(content, list):
            out.extend(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return [c for c in out if c]
