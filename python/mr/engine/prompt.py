"""Tokenizing a rendered chat prompt without letting client text become control tokens.

The rendered prompt is tokenized with special-token parsing on, since the template's own
markers (`<|im_start|>`, ...) must become their tokens. Client text that itself contains such
marker text (in a message, a tool description or schema, tool-call arguments) would then inject
real control tokens: a forged turn. So before rendering, every control-token text inside client
text is swapped for a private-use placeholder character; the template may trim, quote or
re-serialise that text as it likes, the placeholder survives, and at tokenizing time each one
becomes the marker's plain-text tokens. A prompt without such text is tokenized as a whole,
exactly as llama-server would.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from mr import _native
from mr.errors import InvalidArgumentError
from mr.jsontypes import JSON

_BASE = 0xF0000  # Supplementary Private Use Area-A: never a template's own text
ROLES = frozenset({"system", "user", "assistant", "tool"})


def control_texts(model: _native.Model) -> list[str]:
    """The text of every control token (rendered only when special tokens are shown)."""
    out = []
    for token in range(model.n_vocab):
        shown = model.token_to_piece(token, True)
        if shown and model.token_to_piece(token, False) != shown:
            text = shown.decode("utf-8", "replace")
            if text.strip():
                out.append(text)
    return out


class SpecialGuard:
    """Keeps client text as text through rendering (see the module docstring)."""

    def __init__(self, model: _native.Model) -> None:
        self._model = model
        texts = sorted(set(control_texts(model)), key=len, reverse=True)[:0xFFFD]
        self._marker = {text: chr(_BASE + i) for i, text in enumerate(texts)}
        self._text = {code: text for text, code in self._marker.items()}
        self._find = re.compile("|".join(map(re.escape, texts))) if texts else None
        self._codes = re.compile(f"[{chr(_BASE)}-{chr(_BASE + max(len(texts), 1) - 1)}]")

    def protect(self, value: Any) -> Any:
        """A copy of `value` (JSON-like) with marker text in every string (and key) swapped out."""
        if isinstance(value, str):
            return self._find.sub(lambda m: self._marker[m.group(0)], value) if self._find else value
        if isinstance(value, list):
            return [self.protect(v) for v in value]
        if isinstance(value, dict):
            return {self.protect(k): self.protect(v) for k, v in value.items()}
        return value

    def find(self, value: object) -> str | None:
        """The first control-token text in `value` (JSON-like: every string and key), or None."""
        if isinstance(value, str):
            match = self._find.search(value) if self._find else None
            return match.group(0) if match else None
        if isinstance(value, dict):
            items: list[object] = [*value.keys(), *value.values()]
        elif isinstance(value, list):
            items = value
        else:
            return None
        return next((found for found in map(self.find, items) if found is not None), None)

    def tokens(self, prompt: str, add_special: bool = True) -> np.ndarray:
        """The prompt's tokens: template markers as control tokens, placeholders as plain text.
        add_special: a BOS where the model takes one (false for a piece after the start)."""
        if not self._codes.search(prompt):
            return self._model.tokenize(prompt, add_special, True)
        pieces: list[np.ndarray] = []
        start = 0
        for match in self._codes.finditer(prompt):
            pieces.append(self._model.tokenize(prompt[start:match.start()], add_special and start == 0, True))
            pieces.append(self._model.tokenize(self._text[match.group(0)], False, False))
            start = match.end()
        pieces.append(self._model.tokenize(prompt[start:], add_special and start == 0, True))
        return np.concatenate(pieces).astype(np.int32)

    def reveal(self, prompt: str) -> str:
        """The prompt as the client would read it (placeholders back to their text)."""
        return self._codes.sub(lambda m: self._text[m.group(0)], prompt)


def check_roles(messages: list[JSON]) -> None:
    """Roles come from a fixed set: a role is rendered verbatim, so "user\\n...system" forges a turn."""
    for i, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        if role not in ROLES:
            err = InvalidArgumentError(f"messages[{i}].role must be one of {', '.join(sorted(ROLES))}")
            err.param = f"messages[{i}].role"
            raise err
