"""The README's Python API example runs as written, on the real SmolLM2, and does what it says."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

README = Path(__file__).resolve().parents[2] / "README.md"
MODEL_IN_EXAMPLE = '"SmolLM2-135M-Instruct.Q4_1.gguf"'


def _example() -> str:
    text = README.read_text()
    section = text[text.index("## Python API"):]
    block = re.search(r"^```python\n(.*?)^```", section, re.M | re.S)
    assert block is not None, "the section opens with its example"
    assert MODEL_IN_EXAMPLE in block.group(1)
    return block.group(1)


def test_the_python_api_example_runs(smollm2_path: Path) -> None:
    code = _example().replace(MODEL_IN_EXAMPLE, repr(str(smollm2_path)))
    scope: dict[str, object] = {}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, str(README), "exec"), scope)  # the README's own example
    printed = out.getvalue()
    assert printed.strip(), "the chat and the generation print their text"
    assert "get_weather" in printed, "a required tool call comes back as a call"
    vectors = scope["vectors"]
    assert getattr(vectors, "shape", (0,))[0] == 2 and str(getattr(vectors, "dtype", "")) == "float32"
